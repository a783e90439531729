"""How a stage that did not succeed is told: exit code or signal, the last stderr lines, resources.

The error's `details` carry the exit code, CPU seconds and peak RSS, so the run's execution
report shows them for a failed stage as for one that passed.
"""

from __future__ import annotations

import signal
from typing import Any

from nodes.base import NodeContext
from nodes.command.process import Outcome
from nodes.errors import NodeError

__all__ = ["STDERR_LINES_IN_ERROR", "output_text", "stage_failed", "stage_stopped", "usage"]

STDERR_LINES_IN_ERROR = 10


def usage(outcome: Outcome) -> dict[str, Any]:
    """What a failed stage's error carries, for the execution report: its exit code and resources."""
    return {
        "exit_code": outcome.exit_code,
        "cpu_seconds": outcome.cpu_seconds,
        "peak_rss_bytes": outcome.peak_rss_bytes,
    }


def output_text(data: bytes, ctx: NodeContext) -> str:
    """A stream as text, with every known secret masked."""
    return ctx.secrets.redact(data.decode("utf-8", "replace"))


def _stderr_lines(outcome: Outcome, ctx: NodeContext) -> str:
    lines = [line for line in output_text(outcome.stderr, ctx).splitlines() if line.strip()]
    if not lines:
        return ""
    shown = [line if len(line) <= 300 else line[:299] + "…" for line in lines[-STDERR_LINES_IN_ERROR:]]
    of = f" of {len(lines)}" if len(lines) > len(shown) else ""
    return f"\nstderr (last {len(shown)}{of} lines):\n" + "\n".join(f"  {line}" for line in shown)


def stage_failed(
    code: int | None, outcome: Outcome, retry_on: list[int] | None, ctx: NodeContext
) -> NodeError:
    """An exit code not in `success_codes`: retryable unless `retry_on_exit_codes` leaves it out."""
    retryable = retry_on is None or code in retry_on
    how = ""
    if code is not None and code < 0:
        try:
            how = f" (killed by {signal.Signals(-code).name})"
        except ValueError:
            how = f" (killed by signal {-code})"
    return NodeError(
        f"exit code {code}{how}{_stderr_lines(outcome, ctx)}",
        retryable=retryable,
        details={**usage(outcome), "exit_code": code},
    )


def stage_stopped(outcome: Outcome, ctx: NodeContext) -> NodeError:
    """The deadline (retryable) or a cancelled attempt: the group is gone either way."""
    seconds = f"{outcome.duration_s:.1f} s"
    if outcome.ended == "timeout":
        return NodeError(
            f"timed out after {seconds}: its process group was stopped (SIGTERM, SIGKILL after the grace)"
            f"{_stderr_lines(outcome, ctx)}",
            retryable=True,
            details=usage(outcome),
        )
    return NodeError(f"stopped after {seconds}: the attempt was cancelled and its process group killed")
