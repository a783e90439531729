"""`pipeline serve`: every definition as a deployment of the one flow, run in this process.

Prefect's own `serve` starts a fresh Python process for each flow run (about 3 s here
before the first node runs). An alert should reach the on-call engineer in about a
second, so this server claims its deployments' scheduled runs the way a runner does
(proposing Pending, which only one claimer can win) and runs them concurrently in
its own event loop. Each deployment is registered as prefect.yaml declares it, both made
from the definition (deployments.specs): schedules, event triggers, parameters, and the
definition's typed parameters as the schema of `payload` in the UI's run form.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import UTC, datetime, timedelta
from uuid import UUID

from flows.definition import Pipeline, list_definitions, load_definition
from nodes.errors import DefinitionError

__all__ = ["PipelineServer", "register_deployments", "run_receiver", "runner_deployment", "serve"]

CANCEL_CHECK_SECONDS = 2.0
# how often runs marked Crashed (their process died) are looked for, to send their on_failure
CRASH_CHECK_SECONDS = 10.0
# at start, crashes this recent are still told (a crash while no `pipeline serve` ran)
CRASH_LOOKBACK_SECONDS = 3600.0
SHUTDOWN_GRACE_SECONDS = 30.0

log = logging.getLogger("opsflow.serve")


async def register_deployments(names: list[str] | None = None) -> dict[UUID, str]:
    """Create or update `run-pipeline/<name>` for every valid definition; id → name.

    An invalid definition is reported and left out, so one bad file does not stop the
    others from being served.
    """
    registered: dict[UUID, str] = {}
    for path in list_definitions():
        try:
            pipeline = load_definition(path)
        except DefinitionError as exc:
            log.warning("not serving %s: %s", path.name, "; ".join(exc.problems))
            continue
        if names and pipeline.name not in names:
            continue
        deployment = await runner_deployment(pipeline)
        registered[await deployment.apply()] = pipeline.name
    return registered


async def runner_deployment(pipeline: Pipeline):
    """The deployment prefect.yaml declares for `pipeline` (deployments.specs), as a RunnerDeployment.

    The run form's `payload` is typed by the definition's parameters; Prefect enforces the
    schema when a run is created (its API answers 409 to a payload that does not fit).
    """
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from prefect.schedules import Cron, Interval
    from prefect.utilities.callables import ParameterSchema
    from pydantic import TypeAdapter

    from deployments.specs import deployment_spec
    from flows.parameters import deployment_parameter_schema
    from flows.pipeline import run_pipeline

    spec = deployment_spec(pipeline)
    schedules = [
        Cron(s["cron"], timezone=s["timezone"], active=s["active"], parameters=s["parameters"])
        if "cron" in s
        else Interval(s["interval"], active=s["active"], parameters=s["parameters"])
        for s in spec.get("schedules", [])
    ]
    adapter: TypeAdapter = TypeAdapter(DeploymentTriggerTypes)
    deployment = await run_pipeline.to_deployment(
        name=spec["name"],
        parameters=spec["parameters"],
        description=spec.get("description"),
        schedules=schedules,
        triggers=[adapter.validate_python(t) for t in spec.get("triggers", [])],
    )
    if pipeline.definition.parameters:  # else the flow's own schema, as `prefect deploy` registers it
        flow_schema = deployment._parameter_openapi_schema.model_dump(exclude_unset=True)
        typed = deployment_parameter_schema(flow_schema, pipeline.definition.parameters)
        deployment._parameter_openapi_schema = ParameterSchema(**typed)
    return deployment


class PipelineServer:
    """Claims scheduled runs of the given deployments and runs them in this event loop."""

    def __init__(self, deployment_ids: list[UUID], *, poll_seconds: float = 0.5, limit: int = 16):
        self.deployment_ids = deployment_ids
        self.poll_seconds = poll_seconds
        self.limit = limit
        self.running: dict[UUID, asyncio.Task] = {}
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        """Poll, claim and run until `stopping` is set; then let running flows finish (bounded)."""
        from prefect.client.orchestration import get_client

        last_cancel_check = last_crash_check = 0.0
        crashes_since = datetime.now(UTC) - timedelta(seconds=CRASH_LOOKBACK_SECONDS)
        async with get_client() as client:
            while not self.stopping.is_set():
                await self._claim_due_runs(client)
                now = asyncio.get_running_loop().time()
                if self.running and now - last_cancel_check > CANCEL_CHECK_SECONDS:
                    last_cancel_check = now
                    await self._cancel_requested(client)
                if now - last_crash_check > CRASH_CHECK_SECONDS:
                    last_crash_check = now
                    crashes_since = await _tell_crashed_runs(client, crashes_since)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), self.poll_seconds)
            if self.running:
                log.info(
                    "waiting up to %.0f s for %d running flow run(s)",
                    SHUTDOWN_GRACE_SECONDS,
                    len(self.running),
                )
                await asyncio.wait(list(self.running.values()), timeout=SHUTDOWN_GRACE_SECONDS)

    async def _claim_due_runs(self, client) -> None:
        free = self.limit - len(self.running)
        if free <= 0:
            return
        try:
            runs = await client.get_scheduled_flow_runs_for_deployments(
                deployment_ids=self.deployment_ids, scheduled_before=datetime.now(UTC), limit=free
            )
        except Exception as exc:  # the API may be restarting: keep serving, try again
            log.warning("could not read scheduled runs: %s", exc)
            return
        for flow_run in runs:
            if flow_run.id in self.running or not await self._claim(client, flow_run):
                continue
            task = asyncio.create_task(self._execute(flow_run), name=f"flow-run-{flow_run.id}")
            self.running[flow_run.id] = task
            task.add_done_callback(functools.partial(self._forget, flow_run.id))

    def _forget(self, run_id: UUID, _: asyncio.Task) -> None:
        self.running.pop(run_id, None)

    async def _claim(self, client, flow_run) -> bool:
        from prefect.exceptions import Abort
        from prefect.states import Pending
        from prefect.utilities.engine import propose_state

        try:
            state = await propose_state(client, Pending(), flow_run_id=flow_run.id)
        except Abort:
            return False  # another runner took it
        except Exception as exc:
            log.warning("could not claim flow run %s: %s", flow_run.id, exc)
            return False
        return state.is_pending()

    async def _execute(self, flow_run) -> None:
        from prefect.flow_engine import run_flow_async

        from flows.pipeline import run_pipeline

        try:
            await run_flow_async(
                flow=run_pipeline,
                flow_run=flow_run,
                parameters=dict(flow_run.parameters),
                return_type="state",
            )
        except asyncio.CancelledError:
            raise
        except Exception:  # the engine records the failure in Prefect; this is the last resort
            log.exception("flow run %s raised outside the engine", flow_run.id)

    async def _cancel_requested(self, client) -> None:
        """Cancel runs someone asked to cancel (UI or `prefect flow-run cancel`)."""
        from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState
        from prefect.client.schemas.filters import FlowRunFilterStateName as StateName
        from prefect.states import Cancelled

        try:
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=list(self.running)),
                    state=FlowRunFilterState(name=StateName(any_=["Cancelling"])),
                )
            )
        except Exception as exc:
            log.warning("could not check for cancellations: %s", exc)
            return
        for flow_run in runs:
            task = self.running.get(flow_run.id)
            if task is None:
                continue
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            await client.set_flow_run_state(
                flow_run.id, Cancelled(message="Cancelled on request"), force=True
            )


async def _tell_crashed_runs(client, since: datetime) -> datetime:
    """Send `on_failure` for opsflow runs that ended Crashed since `since`; returns the next `since`.

    A run whose process died is marked Crashed by the heartbeat automation (on SQLite, by
    deployments.heartbeats), and no hook of its own can run. Several servers may look at
    once: a claim per run attempt lets one tell it.
    """
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.logging.loggers import flow_run_logger

    from flows.hooks import tell_crashed_run
    from flows.request import FLOW_NAME

    checked_at = datetime.now(UTC)
    try:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CRASHED]))
            ),
            sort=FlowRunSort.END_TIME_DESC,
            limit=50,
        )
    except Exception as exc:
        log.warning("could not look for crashed runs: %s", exc)
        return since
    for flow_run in runs:
        if flow_run.state is None or flow_run.state.timestamp < since:
            continue
        try:
            await asyncio.to_thread(tell_crashed_run, flow_run, flow_run_logger(flow_run))
        except Exception as exc:  # one bad definition must not keep the others untold
            log.warning("could not tell the crash of flow run %s: %s", flow_run.id, exc)
    return checked_at - timedelta(seconds=CRASH_CHECK_SECONDS)


async def _crash_detection(wanted: bool) -> bool:
    """Set up deployments.crashes; True when this process must watch heartbeats (SQLite).

    Switched off, an automation an earlier serve made is removed: it would go on stalling
    a SQLite server.
    """
    from prefect.client.orchestration import get_client

    from deployments.crashes import remove_crash_automation, set_up_crash_detection

    try:
        async with get_client() as client:
            if wanted:
                return await set_up_crash_detection(client, log)
            if await remove_crash_automation(client):
                log.info("crash detection automation removed (OPSFLOW_CRASH_AUTOMATION=off)")
    except Exception as exc:  # noqa: BLE001 - serving goes on; the runs just lack the safety net
        log.warning("could not set up crash detection (runs of a killed process stay Running): %s", exc)
    return False


async def serve(
    *,
    poll_seconds: float = 0.5,
    limit: int = 16,
    names: list[str] | None = None,
    on_ready=None,
    crash_automation: bool = True,
) -> None:
    """Register the deployments and run their flow runs until interrupted.

    Definition blocks saved meanwhile (in the UI) are checked as they are saved
    (flows.catalog_watch); `crash_automation` sets up deployments.crashes: the automation,
    or on SQLite this process watching heartbeats (deployments.heartbeats).
    """
    from flows.catalog_watch import watch_definition_blocks

    registered = await register_deployments(names)
    if not registered:
        raise DefinitionError("No valid definitions to serve")
    watch = await _crash_detection(crash_automation)
    server = PipelineServer(list(registered), poll_seconds=poll_seconds, limit=limit)
    blocks = asyncio.create_task(watch_definition_blocks(server.stopping), name="definition-blocks")
    heartbeats = asyncio.create_task(_watch_heartbeats(server), name="heartbeats") if watch else None
    if on_ready is not None:
        on_ready(registered, server)
    try:
        await server.run()
    finally:
        server.stopping.set()
        if heartbeats is not None:
            await asyncio.gather(heartbeats, return_exceptions=True)
        await blocks


async def _watch_heartbeats(server: PipelineServer) -> None:
    """Runs of other processes that died end Crashed (this one's are alive while it is)."""
    from deployments.crashes import crash_window
    from deployments.heartbeats import watch_heartbeats

    await watch_heartbeats(server.stopping, crash_window(), CRASH_CHECK_SECONDS, server.running.keys)


async def run_receiver(host: str, port: int, journal: bool, stopping: asyncio.Event) -> None:
    """The alert receiver in this event loop, stopped with the pipeline server."""
    import uvicorn

    from deployments.receiver.app import create_app, freeze_heap

    class Embedded(uvicorn.Server):
        def capture_signals(self):  # the pipeline server owns SIGINT/SIGTERM
            return contextlib.nullcontext()

    server = Embedded(uvicorn.Config(create_app(journal=journal), host=host, port=port, log_level="warning"))
    freeze_heap()
    task = asyncio.create_task(server.serve())
    await stopping.wait()
    server.should_exit = True
    await task
