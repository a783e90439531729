"""`pipeline retry RUN`: run a failed, crashed or cancelled flow run again, as the UI's Retry does;
with `--from NODE`, a new run from that node on."""

from __future__ import annotations

from typing import Annotated

import typer

from deployments.cli.common import Exit

__all__ = ["retry"]


def retry(
    run_id: Annotated[
        str, typer.Argument(help="The flow run: id, unique id prefix or name (see `pipeline runs`).")
    ],
    from_node: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Start a new run at this node: the nodes before it are not run, their outputs "
            "are the past run's.",
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="With --from, here: print the result as JSON.")
    ] = False,
) -> None:
    """Run a failed, crashed or cancelled run of a deployment again (the same flow run, as the UI's Retry).

    Whoever serves its deployment (`pipeline serve`, a worker) picks it up; nodes that
    completed in an earlier attempt are not run again (their stored results are used).

    With --from NODE, any past run starts over at NODE, as a new flow run with the same
    parameters: NODE and the nodes after it run, the other nodes that completed are taken
    as they were. A run of a deployment starts on it; a run `pipeline run` made runs here.
    """
    from flows.prefect_api import run_async

    if from_node is None:
        from flows.retry import retry_run

        run = run_async(lambda: retry_run(run_id))
        typer.echo(f"Flow run {run.name} ({run.id}) scheduled to run again")
        return
    from flows.retry import resume_request, start_resumed

    past, request, pipeline = run_async(lambda: resume_request(run_id, from_node))
    if past.deployment_id is not None:
        started = run_async(lambda: start_resumed(past, request))
        typer.echo(f"Flow run {started.name} ({started.id}) started from node {from_node} of {past.name}")
        return
    from deployments.cli.local_run import run_from_cli

    result = run_from_cli(pipeline, request, as_json=as_json, verbose=False)
    if result["status"] == "failed":
        raise Exit(f"Pipeline failed: {result['error']}", code=1)
