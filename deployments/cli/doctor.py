"""`pipeline doctor`: is this machine ready to run the definitions? Names settings, never values."""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import typer

from flows.definition import Pipeline, definitions_dir, list_definitions, load_definition
from nodes import get_node_type
from nodes.errors import DefinitionError
from nodes.protocols import required_settings_of
from nodes.templating import referenced_names


def run_checks() -> Iterator[tuple[str, str]]:
    """(status, line) for each check, in the order a person would fix them.

    status is `ok`, `note` (an optional setting not set: the run still works, with less)
    or `fail` (a required one, or something broken: the machine is not ready).
    """
    version = sys.version_info
    yield _ok(version >= (3, 11)), f"Python {version.major}.{version.minor}.{version.micro} (3.11+ needed)"
    for passed, line in _prefect_api():
        yield _ok(passed), line
    paths = list_definitions()
    yield _ok(bool(paths)), f"definitions directory {definitions_dir()} ({len(paths)} definitions)"
    for path in paths:
        try:
            pipeline = load_definition(path)
        except DefinitionError as exc:
            yield "fail", f"definition {path.stem}: invalid ({'; '.join(exc.problems)})"
            continue
        for node_id, problem in command_problems(pipeline):
            yield "fail", f"definition {pipeline.name}: node {node_id!r}: {problem}"
        required, optional = settings_needed(pipeline)
        missing = [n for n in required if not os.environ.get(n)]
        unset = {n: why for n, why in optional.items() if not os.environ.get(n)}
        if missing:
            yield "fail", f"definition {pipeline.name}: valid, but not set: {', '.join(missing)}"
        elif unset:
            notes = "; ".join(f"{name} ({why})" for name, why in unset.items())
            yield "note", f"definition {pipeline.name}: valid, ready; optional, not set: {notes}"
        else:
            yield "ok", f"definition {pipeline.name}: valid, settings present"


def command_problems(pipeline: Pipeline) -> Iterator[tuple[str, str]]:
    """(node id, why) for each command node whose program could not be started here."""
    for node in pipeline.definition.nodes:
        if node.type != "command":
            continue
        from nodes.command.node import Config, executable_problem

        problem = executable_problem(Config.model_validate(node.config), Path(pipeline.directory))
        if problem:
            yield node.id, problem


def _ok(passed: bool) -> str:
    return "ok" if passed else "fail"


def settings_needed(pipeline) -> tuple[list[str], dict[str, str]]:
    """The environment settings a definition needs: required ones, and optional ones with why.

    Optional: a `${NAME:-default}`, a node that is `required: false`, a node whose `when`
    reads `run.configured.NAME`, or a provider key of an analysis with a fallback.
    Secret blocks are not listed (they live in Prefect, not in the environment).
    """
    required: list[str] = []
    optional: dict[str, str] = {}
    for node in pipeline.definition.nodes:
        implicit = required_settings_of(get_node_type(node.type))
        names = [(n, False) for n in referenced_names(node.config) if not n.startswith("secret:")]
        names += [(n, True) for n in implicit(node.config)]
        for name, is_implicit in names:
            why = _optional_because(node, name, is_implicit)
            if why is None:
                if name not in required:
                    required.append(name)
            else:
                optional.setdefault(name, why)
    return required, {n: why for n, why in optional.items() if n not in required}


def _optional_because(node, name: str, implicit: bool) -> str | None:
    text = json.dumps(node.config)
    if not implicit and re.search(r"\$\{" + re.escape(name) + r":-", text):
        return "has a default"
    if not node.required:
        return f"node {node.id!r} is optional"
    if node.when and re.search(r"configured\." + re.escape(name) + r"\b", node.when):
        return f"node {node.id!r} runs only when it is set"
    if (
        implicit
        and node.type == "intelligence"
        and isinstance(node.config, dict)
        and node.config.get("fallback")
    ):
        return f"node {node.id!r} falls back to {_fallback_name(node.config['fallback'])}"
    return None


def _fallback_name(fallback) -> str:
    return fallback.get("provider", "?") if isinstance(fallback, dict) else str(fallback)


def _prefect_api() -> Iterator[tuple[bool, str]]:
    from flows.local_server import configured_api_url  # here: it brings urllib and ssl

    url = configured_api_url()
    if not url:
        home = os.environ.get("PREFECT_HOME", "~/.prefect")
        yield True, f"Prefect API: local ephemeral server on demand (SQLite in {home})"
        return
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5) as response:
            yield response.status == 200, f"Prefect API at {url}: HTTP {response.status}"
    except OSError as exc:
        yield False, f"Prefect API at {url}: unreachable ({getattr(exc, 'reason', exc)})"


def doctor_command() -> None:
    """Check Python, the Prefect API, the definitions and the settings they need (names only).

    Exits 1 when something required is missing; optional settings are notes.
    """
    marks = {"ok": "✓", "note": "!", "fail": "✗"}
    counts = {"ok": 0, "note": 0, "fail": 0}
    for status, line in run_checks():
        counts[status] += 1
        typer.echo(f"{marks[status]} {line}")
    if counts["fail"]:
        typer.echo(f"Not ready: {counts['fail']} problem(s) (✗) to fix.")
        raise typer.Exit(1)
    notes = f", with {counts['note']} note(s) (!): optional settings not set" if counts["note"] else ""
    typer.echo(f"Ready{notes}.")
