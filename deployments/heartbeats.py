"""`pipeline serve` marks runs Crashed whose heartbeats stopped, for SQLite-backed servers.

On SQLite, Prefect's trigger service evaluating the crash automation holds the database
for up to a minute (deployments.crashes), so the serving process does the automation's
work itself, with reads only: Running runs of `run-pipeline`, and each one's last
`prefect.flow-run.heartbeat` event. A run silent for longer than the window is proposed
Crashed, unforced: a run another watcher marked first, or one that ended meanwhile, is
in a final state, and Prefect aborts the proposal; nothing is marked twice.

A process cannot mark its own runs when it dies; another `pipeline serve` (or this one,
restarted) marks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from uuid import UUID

__all__ = ["EVENT_LAG_SECONDS", "LOOKUPS_PER_CHECK", "mark_silent_runs", "watch_heartbeats"]

log = logging.getLogger("opsflow.serve")

# Prefect's event persister writes events every 5 s: a heartbeat may be readable that much later
EVENT_LAG_SECONDS = 5.0
# Running runs read per page and in all, and heartbeats looked up, in one check
RUNS_PER_PAGE = 50
MOST_RUNS = 1000
LOOKUPS_PER_CHECK = 20


async def mark_silent_runs(
    client,
    window: int,
    *,
    skip: Collection[UUID] = (),
    flow_name: str | None = None,
    now: datetime | None = None,
    looked_up: dict[UUID, datetime] | None = None,
) -> list[UUID]:
    """Propose Crashed for Running runs with no heartbeat for `window` s; the ids marked.

    A run counts from its last heartbeat, or from when it entered Running when it sent
    none yet. `skip` holds the runs of this process (alive while it is). `now` is the
    time of the check (a test looks ahead with it). At most LOOKUPS_PER_CHECK runs are
    looked up per check, those `looked_up` (kept by the caller across checks) saw least
    recently first: a dead run among many long live ones (approvals waiting for hours)
    is found within a few checks, not starved.
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

    from deployments.crashes import crash_message
    from flows.request import FLOW_NAME

    checked_at = now or datetime.now(UTC)
    cutoff = checked_at - timedelta(seconds=window + EVENT_LAG_SECONDS)
    runs: list = []
    for offset in range(0, MOST_RUNS, RUNS_PER_PAGE):
        page = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name or FLOW_NAME])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
            sort=FlowRunSort.START_TIME_ASC,
            limit=RUNS_PER_PAGE,
            offset=offset,
        )
        runs += page
        if len(page) < RUNS_PER_PAGE:
            break
    memory = looked_up if looked_up is not None else {}
    for gone in set(memory) - {run.id for run in runs}:  # over: nothing more to look up
        del memory[gone]
    never = datetime.min.replace(tzinfo=UTC)
    stale = [
        run for run in runs if run.id not in skip and run.state is not None and run.state.timestamp < cutoff
    ]
    stale.sort(key=lambda run: memory.get(run.id, never))  # stable: oldest first among equals
    candidates = stale[:LOOKUPS_PER_CHECK]
    marked = []
    for run in candidates:
        memory[run.id] = checked_at
        if await _beat_since(client, run.id, cutoff):
            continue
        if await _propose_crashed(client, run.id, crash_message(window)):
            marked.append(run.id)
    return marked


async def _beat_since(client, run_id: UUID, since: datetime) -> bool:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    page = await client.read_events(
        EventFilter(
            # until far ahead: a worker whose clock runs fast is still heard (the default is now)
            occurred=EventOccurredFilter(since=since, until=since + timedelta(days=1)),  # type: ignore[arg-type]
            event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
        ),
        limit=1,
    )
    return bool(page.events)


async def _propose_crashed(client, run_id: UUID, message: str) -> bool:
    """Unforced, so Prefect refuses it for a run already final (another watcher won)."""
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.states import Crashed

    result = await client.set_flow_run_state(run_id, Crashed(message=message), force=False)
    return result.status == SetStateStatus.ACCEPT


async def watch_heartbeats(
    stopping: asyncio.Event, window: int, every: float, own_runs: Callable[[], Collection[UUID]]
) -> None:
    """Check every `every` s until `stopping` is set; a failed or slow check is logged, never raised."""
    from prefect.client.orchestration import get_client

    looked_up: dict[UUID, datetime] = {}
    async with get_client() as client:
        while not stopping.is_set():
            try:
                marked = await asyncio.wait_for(
                    mark_silent_runs(client, window, skip=set(own_runs()), looked_up=looked_up),
                    timeout=every * 3,
                )
            except Exception as exc:  # noqa: BLE001 - serving goes on; the next check tries again
                log.warning("could not check flow-run heartbeats: %s", str(exc) or type(exc).__name__)
            else:
                for run_id in marked:
                    log.warning("flow run %s marked Crashed: no heartbeat for %d s", run_id, window)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), every)
