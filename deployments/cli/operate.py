"""`pipeline` commands that work with a Prefect server or the incident store.

History (`runs`, `show`, `logs`), serving (`serve`, `receiver`), definitions in the
Prefect UI (`publish`, `pull`), approvals, incidents and `doctor`. They register on
the app of `deployments.cli.app`, which stays the one entry point.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from deployments.cli.app import Exit, app


@app.command("run-stage")
def run_stage_command(
    node_id: Annotated[str, typer.Argument(help="The node to run.")],
    definition: Annotated[str | None, typer.Option("--definition", "-d", help="Definition name.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path of a definition file.")] = None,
    from_run: Annotated[
        str | None,
        typer.Option(help="Take the payload and upstream outputs (redacted) from this past run."),
    ] = None,
    payload: Annotated[str | None, typer.Option(help="Alert payload as JSON text.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Alert payload JSON file.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use a sample Alertmanager payload.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the node result as JSON.")] = False,
) -> None:
    """Run one node here, for debugging: no flow run, no retries; upstream outputs from --from-run."""
    from deployments.cli.app import _load, _payload
    from flows.render import node_block
    from flows.stage import past_run, run_stage

    if definition and config:
        raise Exit("Cannot specify both --definition and --config")
    if not definition and not config:
        raise Exit("Specify --definition NAME or --config PATH")
    pipeline = _load(definition or str(config))
    if node_id not in pipeline.nodes:
        raise Exit(f"Unknown node id: {node_id} (nodes: {', '.join(pipeline.nodes)})")
    data = _payload(payload, file, sample)
    outputs: dict = {}
    if from_run:
        import asyncio

        from flows.prefect_api import with_api

        past_payload, outputs = with_api(lambda: asyncio.run(past_run(from_run)))
        if not (payload or file or sample):
            data = past_payload
    missing = sorted(pipeline.ancestors(node_id) - set(outputs))
    if missing:
        typer.echo(f"note: no output of upstream node(s) {', '.join(missing)}", err=True)
    result = run_stage(pipeline, node_id, data, outputs)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo("\n".join(node_block(node_id, result["node_type"], result)))
    typer.echo("Output:")
    typer.echo(json.dumps(result["output"], indent=2, default=str, ensure_ascii=False))


@app.command()
def runs(
    definition: Annotated[
        str | None, typer.Option("--definition", "-d", help="Only this definition.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many runs.")] = 20,
) -> None:
    """List recent runs from the Prefect API, newest first."""
    from deployments.cli.run import list_runs

    rows = list_runs(definition, limit)
    if not rows:
        typer.echo("No runs found.")
        return
    typer.echo(f"{'started':<26} {'state':<10} {'duration':>9}  {'name':<32} id")
    for row in rows:
        duration = f"{row['duration_s']:.2f}s" if row["duration_s"] is not None else "-"
        started = (row["start_time"] or "-")[:25]
        typer.echo(f"{started:<26} {row['state']:<10} {duration:>9}  {row['name']:<32} {row['id']}")


@app.command()
def show(
    run_id: Annotated[
        str, typer.Argument(help="Flow run id, unique id prefix or name (see `pipeline runs`).")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the rebuilt run result as JSON.")] = False,
) -> None:
    """Show a past run from the Prefect API: state, nodes, task runs, errors and the result table."""
    from flows.past_runs import show_from_cli

    typer.echo(show_from_cli(run_id, as_json=as_json))


@app.command()
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


_JOURNAL_HELP = (
    "Answer alerts once written to a journal in the incident store's database, and create "
    "their runs as fast as Prefect allows (for alert storms; the 202 then carries a delivery id)."
)

_NO_AUTH_HELP = "Listen off loopback without a receiver token (anyone reaching it can run definitions)."


def _receiver_access(host: str, no_auth: bool) -> None:
    from deployments.receiver.access import check_receiver_access
    from nodes.errors import OpsflowError

    try:
        check_receiver_access(host, no_auth=no_auth)
    except OpsflowError as exc:
        raise Exit(str(exc)) from None


@app.command()
def serve(
    poll: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between polls for due runs.")] = 0.5,
    limit: Annotated[int, typer.Option(min=1, max=256, help="Flow runs at once.")] = 16,
    receiver: Annotated[bool, typer.Option("--receiver", help="Also run the alert receiver.")] = False,
    host: Annotated[str, typer.Option(help="Receiver address (with --receiver).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Receiver port (with --receiver).")] = 8080,
    journal: Annotated[bool, typer.Option("--journal", help=_JOURNAL_HELP)] = False,
    no_auth: Annotated[bool, typer.Option("--no-auth", help=_NO_AUTH_HELP)] = False,
) -> None:
    """Serve every definition as a deployment (no work pool) and run its flow runs here."""
    from deployments.cli.run import serve_from_cli

    if receiver:
        _receiver_access(host, no_auth)

    serve_from_cli(poll=poll, limit=limit, receiver=(host, port, journal) if receiver else None)


@app.command("receiver")
def receiver_command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    journal: Annotated[bool, typer.Option("--journal", help=_JOURNAL_HELP)] = False,
    no_auth: Annotated[bool, typer.Option("--no-auth", help=_NO_AUTH_HELP)] = False,
) -> None:
    """Run the alert webhook receiver: each alert becomes a flow run of its definition's deployment."""
    _receiver_access(host, no_auth)
    from flows.local_server import configured_api_url
    from flows.settings import apply_prefect_defaults, skip_tls_setup_for

    apply_prefect_defaults()
    skip_tls_setup_for(configured_api_url())
    if not configured_api_url():
        raise Exit(
            "The receiver needs a Prefect server: set PREFECT_API_URL (e.g. of `prefect server start`), "
            "or run `pipeline serve --receiver` to serve the deployments and the receiver together"
        )
    if journal:  # a journal that cannot be opened is said here, not in a startup traceback
        from deployments.receiver.journal import Journal
        from nodes.errors import OpsflowError

        try:
            Journal()
        except OpsflowError as exc:
            raise Exit(f"Cannot open the receiver journal: {exc}") from None
    from deployments.receiver.app import main as receiver_main

    receiver_main(host=host, port=port, journal=journal)


@app.command()
def publish(ref: Annotated[str, typer.Argument(help="Definition name or path.")]) -> None:
    """Store a definition as a Prefect block, editable in the Prefect UI; each change is a new revision."""
    from flows.prefect_api import with_api

    def call():
        from flows.catalog import publish as publish_block  # after the API URL is known

        return publish_block(ref)

    name, revision = with_api(call)
    typer.echo(f"✓ {name} published as block opsflow-pipeline-definition/{name} (revision {revision})")


@app.command()
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


@app.command()
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


@app.command()
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


@app.command()
def doctor() -> None:
    """Check Python, the Prefect API, the definitions and the settings they need (names only).

    Exits 1 when something required is missing; optional settings are notes.
    """
    from deployments.cli.doctor import run_checks

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
