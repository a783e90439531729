"""`pipeline retry RUN`: what the Prefect UI's Retry button does, from the command line.

The same flow run runs again (its `run_count` goes up): the run is set to Scheduled,
named AwaitingRetry, exactly as the UI does, and whoever serves its deployment
(`pipeline serve`, a worker) picks it up. Only a run that ended failed, crashed or
cancelled is retried, and only a run of a deployment: a run `pipeline run` made in its
own process has nobody to pick it up again.

`pipeline retry RUN --from NODE` is a new run instead (see `flows.resume`): of the same
deployment, or here for a run `pipeline run` made, with the same parameters.
"""

from __future__ import annotations

from typing import Any

from nodes.errors import UsageError

__all__ = ["RETRYABLE", "resume_request", "retry_run", "start_resumed"]

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


async def resume_request(ref: str, from_node: str) -> tuple[Any, Any, Any]:
    """(the past run `ref` names, the request of a new run of it from `from_node`, its pipeline).

    The new run has the past run's parameters, and `from_run`/`from_node`; a node id the
    run's definition does not have is a `UsageError`, before anything starts.
    """
    import dataclasses

    from prefect.client.orchestration import get_client

    from flows.definition import load_definition
    from flows.history import resolve_run
    from flows.request import RunRequest
    from flows.resume import reran

    async with get_client() as client:
        run = await resolve_run(client, ref)
    if run.state is None or not run.state.is_final():
        state = run.state.type.value.lower() if run.state else "not started"
        raise UsageError(f"Flow run {run.name} is {state}: start from a node of a run that is over")
    past = RunRequest.from_parameters(run.parameters)
    if not past.definition:
        raise UsageError(f"Flow run {run.name} is not a run of an opsflow definition")
    pipeline = load_definition(past.definition)
    reran(pipeline, from_node)
    return run, dataclasses.replace(past, from_run=str(run.id), from_node=from_node), pipeline


async def start_resumed(run: Any, request: Any) -> Any:
    """A new flow run of `run`'s deployment for `request`, tagged with the run it resumes."""
    from prefect.client.orchestration import get_client

    from flows.resume import RESUMED_TAG

    async with get_client() as client:
        return await client.create_flow_run_from_deployment(
            run.deployment_id,
            parameters=request.parameters(),
            tags=[f"{RESUMED_TAG}:{str(run.id)[:8]}"],
        )
