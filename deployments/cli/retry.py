"""`pipeline retry RUN`: run a failed, crashed or cancelled flow run again, as the UI's Retry does."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["retry"]


def retry(
    run_id: Annotated[
        str, typer.Argument(help="The flow run: id, unique id prefix or name (see `pipeline runs`).")
    ],
) -> None:
    """Run a failed, crashed or cancelled run of a deployment again (the same flow run, as the UI's Retry).

    Whoever serves its deployment (`pipeline serve`, a worker) picks it up; nodes that
    completed in an earlier attempt are not run again (their stored results are used).
    """
    from flows.prefect_api import run_async
    from flows.retry import retry_run

    run = run_async(lambda: retry_run(run_id))
    typer.echo(f"Flow run {run.name} ({run.id}) scheduled to run again")
