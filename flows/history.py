"""Run history read back from the Prefect API: task-run records and past flow runs."""

from __future__ import annotations

import asyncio
import time
from typing import Any

__all__ = ["flush_client_queues", "recent_runs", "wait_for_task_runs"]


def flush_client_queues(timeout: float = 10.0) -> None:
    """Send the events and logs this process still holds, before its API goes away."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    EventsWorker.drain_all(timeout=timeout)
    APILogWorker.drain_all(timeout=timeout)


async def wait_for_task_runs(flow_run_id: str, expected: int, timeout: float = 30.0) -> int:
    """Wait until the API holds `expected` task runs of the flow run, each in a final state.

    Task runs reach the server as events that a server service writes in the
    background; a process that exits right after its flow would lose the unwritten
    ones. Returns how many were found (fewer than expected only on timeout).
    """
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout
    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)]))
    found = 0
    async with get_client() as client:
        while True:
            runs = await client.read_task_runs(flow_run_filter=run_filter)
            found = sum(1 for run in runs if run.state is not None and run.state.is_final())
            if found >= expected or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.1)


async def recent_runs(definition: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The latest opsflow flow runs (of one definition, when given), newest first."""
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.pipeline import FLOW_NAME

    flow_filter = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
    run_filter = FlowRunFilter(name=FlowRunFilterName(like_=definition)) if definition else None
    pattern = re.compile(rf"^{re.escape(definition)}-[0-9a-f]{{8}}$") if definition else None
    rows: list[dict[str, Any]] = []
    async with get_client() as client:
        offset = 0
        while len(rows) < limit:
            batch = await client.read_flow_runs(
                flow_filter=flow_filter,
                flow_run_filter=run_filter,
                sort=FlowRunSort.START_TIME_DESC,
                limit=200,
                offset=offset,
            )
            if not batch:
                break
            offset += len(batch)
            for run in batch:
                if pattern and not pattern.match(run.name or ""):
                    continue
                rows.append(
                    {
                        "id": str(run.id),
                        "name": run.name,
                        "state": run.state.name if run.state else "unknown",
                        "start_time": run.start_time.isoformat() if run.start_time else None,
                        "duration_s": round(run.total_run_time.total_seconds(), 3)
                        if run.total_run_time
                        else None,
                        "trace_id": (run.parameters or {}).get("trace_id"),
                    }
                )
                if len(rows) >= limit:
                    break
    return rows
