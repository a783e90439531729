"""`pipeline` commands that read or answer what Prefect and the incident store hold.

History (`runs`, `show`, `logs`), definitions in the Prefect UI (`publish`, `pull`),
approvals (`approve`) and the incident store (`incidents`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from deployments.cli.common import Exit

__all__ = ["approve", "incidents", "logs", "publish", "pull", "runs", "show"]


def runs(
    definition: Annotated[
        str | None, typer.Option("--definition", "-d", help="Only this definition.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs.")] = 20,
) -> None:
    """List recent runs from the Prefect API, newest first."""
    from flows.history import recent_runs
    from flows.prefect_api import run_async

    rows = run_async(lambda: recent_runs(definition, limit))
    if not rows:
        typer.echo("No runs found.")
        return
    typer.echo(f"{'started':<26} {'state':<10} {'duration':>9}  {'name':<32} id")
    for row in rows:
        duration = f"{row['duration_s']:.2f}s" if row["duration_s"] is not None else "-"
        started = (row["start_time"] or "-")[:25]
        typer.echo(f"{started:<26} {row['state']:<10} {duration:>9}  {row['name']:<32} {row['id']}")


def show(
    run_id: Annotated[
        str, typer.Argument(help="Flow run id, unique id prefix or name (see `pipeline runs`).")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the Run result as JSON, with the node results it stored.")
    ] = False,
) -> None:
    """Show a past run as `pipeline run` printed it: each node's stored result, its task run, the table."""
    from flows.past_runs import show_from_cli

    typer.echo(show_from_cli(run_id, as_json=as_json))


def logs(
    run_id: Annotated[
        str, typer.Argument(help="Flow run id, unique id prefix or name (see `pipeline runs`).")
    ],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run ends (Ctrl-C stops).")
    ] = False,
) -> None:
    """Print a run's logs, oldest first: timestamp, level, node (task run) or flow, message."""
    from flows.past_runs import logs_from_cli

    logs_from_cli(run_id, follow)


def publish(ref: Annotated[str, typer.Argument(help="Definition name or path.")]) -> None:
    """Store a definition as a Prefect block, editable in the Prefect UI; each change is a new revision."""
    from flows.prefect_api import with_api

    def call():
        from flows.catalog import publish as publish_block  # after the API URL is known

        return publish_block(ref)

    name, revision = with_api(call)
    typer.echo(f"✓ {name} published as block opsflow-pipeline-definition/{name} (revision {revision})")


def pull(
    name: Annotated[str, typer.Argument(help="Definition (block) name.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (default: definitions/NAME.json).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a file with other content.")] = False,
) -> None:
    """Write a definition block (e.g. edited in the Prefect UI) back to a file."""
    from flows.prefect_api import with_api

    def call():
        from flows.catalog import pull as pull_block

        return pull_block(name, output, force=force)

    path = with_api(call)
    typer.echo(f"✓ {name} written to {path}")


def approve(
    run_id: Annotated[str, typer.Argument(help="The paused flow run: id, unique id prefix or name.")],
    reject: Annotated[bool, typer.Option("--reject", help="Reject instead of approve.")] = False,
    comment: Annotated[str, typer.Option(help="Why.")] = "",
    by: Annotated[str | None, typer.Option(help="Who decides (default: $USER).")] = None,
) -> None:
    """Answer a run waiting at an approval node (the same as the form in the Prefect UI)."""
    from flows.approval import answer_approval
    from flows.prefect_api import with_api

    who = by or os.environ.get("USER") or "cli"
    resolved = with_api(lambda: answer_approval(run_id, approve=not reject, comment=comment, by=who))
    typer.echo(f"{'Rejected' if reject else 'Approved'} flow run {resolved}")


def incidents(
    incident_id: Annotated[
        str | None, typer.Argument(help="Show this incident (default: list them).")
    ] = None,
    status: Annotated[str | None, typer.Option(help="Only `open` or `resolved` incidents.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many incidents.")] = 20,
) -> None:
    """List incidents in the incident store (OPSFLOW_DATABASE_URL), or show one with its alerts."""
    from flows.incidents import incident_lines, incidents_table

    lines = incident_lines(incident_id) if incident_id else incidents_table(status, limit)
    if lines is None:
        raise Exit(f"Incident not found: {incident_id}")
    typer.echo("\n".join(lines))
