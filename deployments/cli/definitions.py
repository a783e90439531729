"""`pipeline list`, `describe`, `validate` and `schema`: definitions on disk, never importing Prefect."""

from __future__ import annotations

from typing import Annotated

import typer

from deployments.cli.common import Exit, definition_message, load_or_exit
from flows.definition import list_definitions, load_definition
from nodes.errors import DefinitionError

__all__ = ["describe", "list_command", "schema", "validate"]


def list_command() -> None:
    """List the definitions in the definitions directory."""
    for path in list_definitions():
        try:
            pipeline = load_definition(path)
            typer.echo(f"{pipeline.name:<24} {len(pipeline.nodes):>3} nodes  {pipeline.description}")
        except DefinitionError as exc:
            typer.echo(
                f"{path.stem:<24}   invalid  ({len(exc.problems)} problem(s); see `pipeline validate`)"
            )


def describe(name: Annotated[str, typer.Argument(help="Definition name or path.")]) -> None:
    """Show a definition's nodes, graph and the settings it needs (values never shown)."""
    from flows.definition_source import definition_source
    from flows.render import describe_lines

    lines = describe_lines(load_or_exit(name))
    lines.insert(2, f"Runs from: {definition_source(name).line()}")
    typer.echo("\n".join(lines))


def validate(
    targets: Annotated[list[str] | None, typer.Argument(help="Names or paths (default: all).")] = None,
) -> None:
    """Validate definitions; every problem is listed, each naming its node."""
    refs = targets or [str(p) for p in list_definitions()]
    if not refs:
        raise Exit("No definitions found")
    failed = False
    for ref in refs:
        try:
            pipeline = load_definition(ref)
        except DefinitionError as exc:
            failed = True
            typer.echo(f"✗ {ref}", err=True)
            typer.echo(definition_message(exc), err=True)
            continue
        typer.echo(f"✓ {pipeline.name} ({pipeline.definition_version}, {len(pipeline.nodes)} nodes)")
    if failed:
        raise typer.Exit(2)


def schema() -> None:
    """Print the JSON Schema of definition files."""
    from flows.json_schema import schema_text

    typer.echo(schema_text(), nl=False)
