"""Past runs read back from the Prefect API: `pipeline show RUN_ID` and `pipeline logs RUN_ID`.

A past run is rebuilt from what Prefect keeps: the flow run (name, state, parameters,
times), its task runs (one per node: name = node id), each node's result persisted in
result storage (`flows.results`), and the two artifacts the flow attaches (the node
table and the summary), which also cover runs whose stored results are gone or older
than them. What the flow wrote is already redacted; nothing here prints parameters.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sys
import threading
import uuid
from datetime import UTC, datetime
from typing import Any, TextIO

from flows.prefect_api import run_async
from flows.render import duration_text, result_text

__all__ = ["logs_from_cli", "print_logs", "read_run", "run_text", "show_from_cli", "show_run", "task_runs_of"]

POLL_SECONDS = 0.5
# after a followed run turns final, how long its last log lines may still be on the way
# (the flow's process sends logs in batches, every 2 s by default)
FINAL_GRACE_SECONDS = 3.0
# logs arrive in batches stamped when written: look this far back for late ones
LATE_LOG_WINDOW_SECONDS = 30.0
PAGE = 200
_STATUS_OF_STATE = {"COMPLETED": "completed", "FAILED": "failed", "CRASHED": "failed"}
_TASK_ERROR_PREFIX = "Task run encountered an exception "


async def _flow_run(client, run_id: str):
    """The flow run named by its id, a unique id prefix or its run name."""
    from flows.history import resolve_run

    return await resolve_run(client, run_id)


async def task_runs_of(client, run_uuid: uuid.UUID) -> list:
    """Every task run of a flow run, oldest first."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    run_filter = FlowRunFilter(id=FlowRunFilterId(any_=[run_uuid]))
    runs, offset = [], 0
    while True:
        batch = await client.read_task_runs(flow_run_filter=run_filter, limit=PAGE, offset=offset)
        runs += batch
        offset += len(batch)
        if len(batch) < PAGE:
            break
    far = datetime.max.replace(tzinfo=UTC)
    return sorted(runs, key=lambda t: (t.start_time or t.expected_start_time or far, t.name))


def _stamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _summary(markdown: str) -> dict[str, Any]:
    """The facts of the markdown artifact (`flows.render.artifact_markdown`), by line."""
    from flows.stage import OUTPUTS_HEADING

    markdown = markdown.split(OUTPUTS_HEADING, 1)[0]  # the node outputs are not facts of the run
    facts: dict[str, Any] = {"skipped": {}}
    patterns = {
        "definition": r"^# (.+): (\S+)$",
        "definition_version": r"^- definition version: `(.+)`$",
        "trace_id": r"^- trace id: `(.+)`$",
        "duration_ms": r"^- duration: ([\d.]+) ms$",
        "definition_source": r"^- definition source: `(.+)`$",
        "incident_id": r"^- incident: `(.+)`$",
    }
    # the error ends the facts, and may run over lines (a stage's exit code, then its stderr)
    markdown, marker, error = markdown.partition("\n**Error:** ")
    if marker and error.rstrip():
        facts["error"] = error.rstrip()
    for line in markdown.splitlines():
        skipped = re.match(r"^- skipped `([^`]+)`: (.*)$", line)
        if skipped:
            facts["skipped"][skipped.group(1)] = skipped.group(2)
            continue
        for key, pattern in patterns.items():
            match = re.match(pattern, line)
            if match and key not in facts:
                if key == "definition":
                    facts["definition"], facts["status"] = match.groups()
                else:
                    facts[key] = float(match.group(1)) if key == "duration_ms" else match.group(1)
    return facts


def _definition_name(flow_run) -> str:
    definition = (flow_run.parameters or {}).get("definition")
    if isinstance(definition, dict):
        return str(definition.get("name") or "inline")
    if isinstance(definition, str) and definition:
        stem = re.split(r"[\\/]", definition)[-1]
        return stem[:-5] if stem.endswith(".json") else stem
    return re.sub(r"-[0-9a-f]{8}$", "", flow_run.name or "unknown")


def _task_error(message: str | None) -> str:
    message = (message or "").removeprefix(_TASK_ERROR_PREFIX)
    return re.sub(r"^[A-Z]\w*(?:Error|Exception|Timeout|TimedOut)\w*: ", "", message)


def _task_record(task_run) -> dict[str, Any]:
    state = task_run.state
    failed = state is not None and (state.is_failed() or state.is_crashed())
    return {
        "name": task_run.name,
        "id": str(task_run.id),
        "state": state.name if state else "unknown",
        "duration_ms": round(task_run.total_run_time.total_seconds() * 1000, 2)
        if task_run.total_run_time
        else None,
        "runs": task_run.run_count,
        "start_time": _stamp(task_run.start_time),
        "end_time": _stamp(task_run.end_time),
        "error": _task_error(state.message) if failed else None,
    }


async def read_run(run_id: str) -> dict[str, Any]:
    """A past run as a Run result dict, rebuilt from the Prefect API, plus what Prefect adds.

    A completed node's result is the one its task persisted (output, summary, attempts);
    without it (an older run, storage cleaned up) the node table's row says what it can,
    with `output: None`. Extra keys: `flow_run` (name, state, times), `task_runs` (per node
    id), `artifact` (the table rows). When the run left no artifacts (still running,
    crashed), nodes come from its task runs.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.results import stored_results

    async with get_client() as client:
        flow_run = await _flow_run(client, run_id)
        task_runs = await task_runs_of(client, flow_run.id)
        artifacts = await client.read_artifacts(  # newest first: a retried run's last attempt wins
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])),
            sort=ArtifactSort.CREATED_DESC,
        )
        stored = await stored_results(task_runs)
    table = next((a for a in artifacts if a.type == "table" and (a.key or "").startswith("opsflow-")), None)
    markdown = next(
        (
            a
            for a in artifacts
            if a.type == "markdown"
            and (a.key or "").startswith("opsflow-")
            and (a.key or "").endswith("-summary")
        ),
        None,
    )
    data = (json.loads(table.data) if isinstance(table.data, str) else table.data) if table else None
    rows: list[dict[str, Any]] = data if isinstance(data, list) else []
    facts = _summary(markdown.data) if markdown and isinstance(markdown.data, str) else {"skipped": {}}
    state = flow_run.state
    tasks = {t.name: _task_record(t) for t in task_runs}
    status = facts.get("status") or _STATUS_OF_STATE.get(
        state.type.value if state else "", (state.name if state else "unknown").lower()
    )
    error = facts.get("error")
    if error is None and status == "failed" and state is not None and state.message:
        error = state.message.removeprefix("Pipeline failed: ")
    if not rows:  # no table: the task runs are all there is
        rows = [
            {
                "node": t["name"],
                "type": "?",
                "status": "failed" if t["error"] else t["state"].lower(),
                "duration": duration_text(t["duration_ms"] or 0.0),
                "attempts": t["runs"],
                "tokens": "",
                "error": t["error"] or "",
            }
            for t in tasks.values()
        ]
    node_results: dict[str, dict[str, Any]] = {}
    executed: list[str] = []
    skipped: list[str] = []
    for row in rows:
        node_id = row["node"]
        is_skipped = row["status"] in ("skipped", "not run")
        errors = [{"message": row["error"]}] if row["status"] == "failed" and row["error"] else []
        node_results[node_id] = {
            "node_id": node_id,
            "node_type": row["type"],
            "output": None,
            "errors": errors,
            "summary": row.get("summary") or None,
            "duration_ms": _milliseconds(row),
            "skipped": is_skipped,
            "skip_reason": (row.get("skip_reason") or row.get("error") or row["status"])
            if is_skipped
            else None,
            "attempts": row["attempts"] or None,
        }
        if node_id in stored and not is_skipped and not errors:
            node_results[node_id] = stored[node_id]
        (skipped if is_skipped else executed).append(node_id)
    total = flow_run.total_run_time.total_seconds() * 1000 if flow_run.total_run_time else 0.0
    return {
        "trace_id": facts.get("trace_id")
        or (flow_run.parameters or {}).get("trace_id")
        or str(flow_run.id).replace("-", ""),
        "run_id": str(flow_run.id),
        "definition": facts.get("definition") or _definition_name(flow_run),
        "definition_version": facts.get("definition_version") or "unknown",
        "definition_source": facts.get("definition_source"),
        "status": status,
        "incident_id": facts.get("incident_id") or (flow_run.parameters or {}).get("incident_id"),
        "executed_nodes": executed,
        "skipped_nodes": skipped,
        "node_results": node_results,
        "duration_ms": facts.get("duration_ms", round(total, 2)),
        "error": error,
        "flow_run": {
            "name": flow_run.name,
            "state": state.name if state else "unknown",
            "state_message": state.message if state else None,
            "start_time": _stamp(flow_run.start_time),
            "end_time": _stamp(flow_run.end_time),
            "duration_ms": round(total, 2),
        },
        "task_runs": tasks,
        "artifact": {"key": table.key if table else None, "rows": rows if table else []},
    }


def _milliseconds(row: dict[str, Any]) -> float:
    """A row's duration back in ms: `35 ms`, `1.2 s (4.0 s in all)`, or an older row's number."""
    if isinstance(row.get("duration_ms"), int | float):
        return float(row["duration_ms"])
    number, _, unit = str(row.get("duration") or "").partition(" ")
    try:
        value = float(number)
    except ValueError:
        return 0.0
    return value * 1000 if unit.startswith("s") else value


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= 60 else text[:59] + "…"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = list(rows[0])
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    out += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return out


def run_text(run: dict[str, Any]) -> str:
    """The seed's result layout for a run rebuilt by `read_run`, with its Prefect records."""
    flow_run = run["flow_run"]

    def task_lines(node_id: str, node: dict[str, Any]) -> list[str]:
        task = run["task_runs"].get(node_id)
        if task is None:
            return ["  task run: not recorded"]
        took = f" in {task['duration_ms']:.1f} ms" if task["duration_ms"] is not None else ""
        lines = [f"  task run: {task['name']} [{node['node_type']}] {task['state']}{took}"]
        if task["error"] and not node["errors"]:
            lines.append(f"  Errors: {task['error']}")
        return lines

    artifact = []
    if run["artifact"]["rows"]:
        artifact = ["", f"Result artifact ({run['artifact']['key']}):", *_table(run["artifact"]["rows"])]
    return result_text(
        run,
        header=[
            f"Flow run: {flow_run['name']} ({flow_run['state']})",
            f"Started: {flow_run['start_time'] or '-'}  Ended: {flow_run['end_time'] or '-'}",
        ],
        node_lines=task_lines,
        extra=artifact,
        unknown_status=f"Flow run state: {flow_run['state']}",
    )


async def show_run(run_id: str) -> str:
    """The text of `pipeline show RUN_ID`; an unknown id raises `Flow run not found: ID`."""
    return run_text(await read_run(run_id))


def _is_final(flow_run) -> bool:
    return flow_run.state is not None and flow_run.state.is_final()


def _log_line(log, who: str) -> str:
    import logging

    level = logging.getLevelName(log.level)
    head = f"{_stamp(log.timestamp)} {level:<8} [{who}] "
    first, *rest = (log.message or "").splitlines() or [""]
    return "\n".join([head + first, *("    " + line for line in rest)])


async def print_logs(run_id: str, follow: bool, out: TextIO) -> int:
    """Print a flow run's logs oldest first; with `follow`, until the run is final.

    Each line: UTC timestamp, level, the task run's name (the node id) or `flow`, message.
    A run already final when asked ends at once. Returns how many log records were printed.
    """
    from datetime import timedelta

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId, LogFilterTimestamp
    from prefect.client.schemas.sorting import LogSort

    seen: set[uuid.UUID] = set()
    names: dict[uuid.UUID, str] = {}
    newest: datetime | None = None
    async with get_client() as client:
        flow_run = await _flow_run(client, run_id)
        run_uuid = flow_run.id
        final_since: float | None = None if follow and not _is_final(flow_run) else 0.0
        loop = asyncio.get_running_loop()
        while True:
            after = newest - timedelta(seconds=LATE_LOG_WINDOW_SECONDS) if newest else None
            log_filter = LogFilter(
                flow_run_id=LogFilterFlowRunId(any_=[run_uuid]),
                # validated from a dict: the field is typed as Prefect's DateTime, which a datetime becomes
                timestamp=LogFilterTimestamp.model_validate({"after_": after}) if after else None,
            )
            fresh, offset = [], 0
            while True:
                page = await client.read_logs(
                    log_filter=log_filter, limit=PAGE, offset=offset, sort=LogSort.TIMESTAMP_ASC
                )
                fresh += [log for log in page if log.id not in seen]
                offset += len(page)
                if len(page) < PAGE:
                    break
            if any(log.task_run_id and log.task_run_id not in names for log in fresh):
                names.update({t.id: t.name for t in await task_runs_of(client, run_uuid)})
            for log in fresh:
                seen.add(log.id)
                newest = max(newest, log.timestamp) if newest else log.timestamp
                who = "flow" if log.task_run_id is None else names.get(log.task_run_id)
                out.write(_log_line(log, who or f"task {str(log.task_run_id)[:8]}") + "\n")
            out.flush()
            if final_since is not None and loop.time() - final_since >= FINAL_GRACE_SECONDS:
                return len(seen)
            if not follow or _STOP_FOLLOWING.is_set():
                return len(seen)
            await asyncio.sleep(POLL_SECONDS)
            if final_since is None and _is_final(await _flow_run(client, str(run_uuid))):
                final_since = loop.time()


def show_from_cli(run_id: str, as_json: bool = False) -> str:
    """`pipeline show`: the text (or the rebuilt Run result as JSON) of a past run."""
    if as_json:
        return json.dumps(run_async(lambda: read_run(run_id)), indent=2, default=str)
    return run_async(lambda: show_run(run_id))


# set by Ctrl-C while following: the loop ends after its current poll, whatever Prefect's
# client is doing (a cancellation could land inside its retry logic and be held there)
_STOP_FOLLOWING = threading.Event()


def logs_from_cli(run_id: str, follow: bool, out: TextIO | None = None) -> None:
    """`pipeline logs`: print the logs; Ctrl-C while following ends quietly."""
    _STOP_FOLLOWING.clear()
    previous = signal.signal(signal.SIGINT, lambda *_: _STOP_FOLLOWING.set()) if follow else None
    try:
        run_async(lambda: print_logs(run_id, follow, out or sys.stdout))
    except KeyboardInterrupt:
        (out or sys.stdout).flush()
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
