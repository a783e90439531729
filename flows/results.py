"""Node results read back from Prefect result storage, for `pipeline show` and `run-stage --from-run`.

Each completed node task persisted its result (redacted, as JSON; see `flows.node_task`),
and its final task run state says where. A result that cannot be read (its storage was
cleaned up, or is another machine's local disk) is left out: callers fall back on what
the run's artifacts say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

__all__ = ["stored_results"]


async def stored_results(task_runs: Iterable[Any]) -> dict[str, dict[str, Any]]:
    """Each node's persisted result (by node id), from its latest completed task run.

    `task_runs` come oldest first: in a flow run retried from the UI a node has a task
    run per attempt, and the last completed one (`Cached` or `Completed`) holds its result.
    """
    latest: dict[str, Any] = {}
    for task_run in task_runs:
        state = task_run.state
        if state is not None and state.is_completed() and state.data is not None:
            latest[task_run.name] = task_run

    async def read(task_run) -> dict[str, Any] | None:
        try:
            value = await task_run.state.aresult(raise_on_failure=False)
        except Exception:  # gone, or not readable from here: the artifacts still tell the story
            return None
        return value if isinstance(value, dict) and value.get("node_id") == task_run.name else None

    values = await asyncio.gather(*(read(task_run) for task_run in latest.values()))
    return {name: value for name, value in zip(latest, values, strict=True) if value is not None}
