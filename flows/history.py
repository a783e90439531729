"""Run history read back from the Prefect API: task-run records and past flow runs."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

__all__ = [
    "definition_label",
    "flush_client_queues",
    "recent_runs",
    "resolve_run",
    "tag_flow_run",
    "wait_for_task_runs",
]

TAG = "opsflow"
# how many recent runs an id prefix is looked for in
PREFIX_SCAN = 2000


def definition_label(definition: Any) -> str:
    """The definition's name as run names and tags use it: a file's `name` (or stem), not its path."""
    import json
    import re
    from pathlib import Path

    if isinstance(definition, dict):
        return str(definition.get("name") or "inline")
    text = str(definition or "unknown").removeprefix("block:")
    if "/" not in text and "\\" not in text and not text.endswith(".json"):
        return text
    try:
        name = json.loads(Path(text).read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and name:
        return name
    stem = re.split(r"[\\/]", text)[-1]
    return stem.removesuffix(".json") or "unknown"


async def tag_flow_run(run_id: str, definition: str, source: str, *more: str) -> None:
    """Tag the flow run `opsflow`, its definition, its source and `more`, so the UI and `runs -d` find it."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    current = list(context.flow_run.tags) if context and context.flow_run else []
    wanted = [t for t in (TAG, definition, source, *more) if t]
    if all(t in current for t in wanted):
        return
    try:
        async with get_client() as client:
            await client.update_flow_run(
                UUID(run_id), tags=[*current, *(t for t in wanted if t not in current)]
            )
    except Exception as exc:  # tags help people find the run; they never fail it
        from prefect import get_run_logger

        get_run_logger().warning("could not tag the flow run: %s", exc)


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
    """The latest opsflow flow runs (of one definition, when given), newest first.

    A definition's runs are found by tag, whatever their name (a custom trace id, a
    --config path), and by the `<definition>-<trace8>` name for runs from before tags.
    """
    import re

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterName,
        FlowRunFilterTags,
        Operator,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    from flows.request import FLOW_NAME

    flow_filter = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
    run_filter = (
        FlowRunFilter(  # type: ignore[call-arg]  # prefect declares `operator` on a non-pydantic mixin
            operator=Operator.or_,
            tags=FlowRunFilterTags(all_=[TAG, definition]),
            name=FlowRunFilterName(like_=definition),
        )
        if definition
        else None
    )
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
                tagged = TAG in (run.tags or []) and definition in (run.tags or [])
                if pattern and not tagged and not pattern.match(run.name or ""):
                    continue
                rows.append(_row(run))
                if len(rows) >= limit:
                    break
    return rows


def _row(run) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "name": run.name,
        "state": run.state.name if run.state else "unknown",
        "start_time": run.start_time.isoformat() if run.start_time else None,
        "duration_s": round(run.total_run_time.total_seconds(), 3) if run.total_run_time else None,
        "trace_id": (run.parameters or {}).get("trace_id"),
        "tags": list(run.tags or []),
    }


async def resolve_run(client, ref: str):
    """The flow run `ref` names: its id, a unique id prefix, or its run name.

    An unknown ref, or a prefix or name shared by several runs, is a `UsageError`.
    """
    from uuid import UUID

    from prefect.client.schemas.filters import FlowFilter, FlowFilterName, FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort
    from prefect.exceptions import ObjectNotFound

    from flows.request import FLOW_NAME
    from nodes.errors import UsageError

    ref = str(ref).strip()
    try:
        run_uuid = UUID(ref)
    except ValueError:
        run_uuid = None
    if run_uuid is not None:
        try:
            return await client.read_flow_run(run_uuid)
        except ObjectNotFound:
            raise UsageError(f"Flow run not found: {ref}") from None
    if not ref:
        raise UsageError("Flow run not found: ")
    named = await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[ref])), limit=2
    )
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        raise UsageError(f"Flow run name {ref} is ambiguous: give the run id (see `pipeline runs`)")
    prefix = ref.lower()
    if not re.fullmatch(r"[0-9a-f-]{4,36}", prefix):
        raise UsageError(f"Flow run not found: {ref}")
    matches: list = []
    flow_filter = FlowFilter(name=FlowFilterName(any_=[FLOW_NAME]))
    for offset in range(0, PREFIX_SCAN, 200):
        batch = await client.read_flow_runs(
            flow_filter=flow_filter, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=200, offset=offset
        )
        matches += [run for run in batch if str(run.id).startswith(prefix)]
        if len(matches) > 1 or len(batch) < 200:
            break
    if not matches:
        raise UsageError(f"Flow run not found: {ref}")
    if len(matches) > 1:
        raise UsageError(f"Flow run id prefix {ref} is ambiguous: give more of the id")
    return matches[0]
