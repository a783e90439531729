"""What `pipeline run` shows on the terminal while a run goes: progress lines, and no engine noise.

Prefect's console handler prints a full traceback for every failed task run and the
flow's final state again; the progress lines and the result already say both, so those
records stay off the console unless `-v` (they still reach the API and the UI).
"""

from __future__ import annotations

import logging
import re
from typing import Any, TextIO

from flows.progress import emit

__all__ = ["ProgressPrinter", "RetryWatcher", "progress_printer", "quiet_engine_lines"]

_ENGINE_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
_ENGINE_NOISE = ("Finished in state", "Task run failed with", "Encountered exception", "Crash detected")


def _engine_noise(record: logging.LogRecord) -> bool:
    if not record.name.startswith(_ENGINE_LOGGERS):
        return False
    return bool(record.exc_info) or str(record.msg).startswith(_ENGINE_NOISE)


def quiet_engine_lines() -> None:
    """Keep the engine's failure tracebacks and final-state lines off Prefect's console handlers."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    for logger in loggers:
        for handler in getattr(logger, "handlers", []):
            if isinstance(handler, PrefectConsoleHandler) and _QUIET not in handler.filters:
                handler.addFilter(_QUIET)


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _engine_noise(record)


_QUIET = _Quiet()


_RETRY = re.compile(r"(?P<seconds>[\d.]+) second")


class RetryWatcher(logging.Handler):
    """Turns the task engine's "Retry n/m will start in X s" record into a `waiting` event."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if "Retry %s/%s will start" not in str(record.msg) or not isinstance(args, tuple) or len(args) != 5:
            return
        _, _, attempt, retries, when = args  # never the error: it may hold a secret
        if not isinstance(attempt, int) or not isinstance(retries, int):
            return
        match = _RETRY.match(str(when))
        emit(
            {
                "state": "waiting",
                "node_id": getattr(record, "task_run_name", "?"),
                "node_type": getattr(record, "task_name", "?"),
                "reason": "retry",
                "retry": int(attempt),
                "retries": int(retries),
                "delay_s": float(match["seconds"]) if match else 0.0,
            }
        )


def _waiting(event: dict[str, Any]) -> str:
    if event["reason"] == "retry":
        delay = f"in {event['delay_s']:.1f} s" if event["delay_s"] else "now"
        return f"waiting: retry {event['retry']}/{event['retries']} {delay}"
    return (
        f"waiting: approval pending for run {event['run_id']}: pipeline approve {event['run_id']} [--reject]"
    )


def progress_printer(stream: TextIO) -> ProgressPrinter:
    """A progress listener printing one line per event on `stream`; remembers the run id."""
    return ProgressPrinter(stream)


class ProgressPrinter:
    """The listener `progress_printer` makes; `run_id` is the run's once it has started."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.run_id: str | None = None

    def __call__(self, event: dict[str, Any]) -> None:
        stream = self.stream
        if event["state"] == "started":
            self.run_id = event["run_id"]
            return
        if event["state"] == "waiting":
            print(f"▶ {event['node_type']} {event['node_id']} … {_waiting(event)}", file=stream, flush=True)
            return
        head = f"▶ [{event['index']}/{event['total']}] {event['node_type']} {event['node_id']} …"
        if event["state"] == "skipped":
            tail = f"skipped ({event['skip_reason']})"
        elif event["state"] == "failed":
            tail = f"FAILED in {event['duration_ms']:.0f} ms: {event['error']}"
        else:
            tail = f"done in {event['duration_ms']:.0f} ms"
        print(f"{head} {tail}", file=stream, flush=True)
