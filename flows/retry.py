"""`pipeline retry RUN`: what the Prefect UI's Retry button does, from the command line.

The same flow run runs again (its `run_count` goes up): the run is set to Scheduled,
named AwaitingRetry, exactly as the UI does, and whoever serves its deployment
(`pipeline serve`, a worker) picks it up. Only a run that ended failed, crashed or
cancelled is retried, and only a run of a deployment: a run `pipeline run` made in its
own process has nobody to pick it up again.
"""

from __future__ import annotations

from typing import Any

from nodes.errors import UsageError

__all__ = ["RETRYABLE", "retry_run"]

RETRYABLE = ("FAILED", "CRASHED", "CANCELLED")


async def retry_run(ref: str, *, reason: str = "Retry from `pipeline retry`") -> Any:
    """Schedule flow run `ref` (id, unique id prefix or name) to run again; returns the run."""
    from prefect.client.orchestration import get_client
    from prefect.states import State, StateType

    from flows.history import resolve_run

    async with get_client() as client:
        run = await resolve_run(client, ref)
        state = run.state.type.value if run.state else "unknown"
        if state not in RETRYABLE:
            raise UsageError(
                f"Flow run {run.name} is {state.lower()}: only a failed, crashed or cancelled run is retried"
            )
        if run.deployment_id is None:
            raise UsageError(
                f"Flow run {run.name} has no deployment, so nothing would pick a retry up: "
                "run the definition again with `pipeline run`, or serve it (`pipeline serve`)"
            )
        retry = State(type=StateType.SCHEDULED, name="AwaitingRetry", message=reason)
        await client.set_flow_run_state(run.id, retry, force=True)
        return run
