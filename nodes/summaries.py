"""One line saying what a node did, for logs, the node table and result text (DESIGN.md).

Built from the node's output alone, so a result read back later says the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["failure_summary", "summarize"]

LIMIT = 200


def _clip(text: str, limit: int = LIMIT) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _num(value: Any) -> str:
    return f"{value:g}" if isinstance(value, int | float) and not isinstance(value, bool) else str(value)


def _ingest(out: dict[str, Any]) -> str:
    counts = out.get("counts") or {}
    received = counts.get("received")
    if received is None:
        received = len((out.get("incident") or {}).get("alerts") or [])
    parts = [f"{out.get('alerts_created', 0)} new"]
    if out.get("alerts_updated"):
        parts.append(f"{out['alerts_updated']} updated")
    if out.get("alerts_resolved"):
        parts.append(f"{out['alerts_resolved']} resolved")
    where = f"incident {out['incident_id']}" if out.get("incident_id") is not None else "no stored incident"
    noun = "alert" if received == 1 else "alerts"
    duplicate = ", duplicate delivery" if out.get("duplicate") else ""
    return f"ingested {received} {noun} into {where} ({', '.join(parts)}{duplicate})"


def _intelligence(out: dict[str, Any]) -> str:
    provider = str(out.get("provider") or "?")
    if out.get("fallback_used"):
        first = out.get("fallback_from") or "the configured provider"
        provider = f"{provider} (fallback from {first})"
    line = f"analysis ({provider}): {_clip(out.get('summary') or '-', 120)}"
    if out.get("probable_cause"):
        line += f" — cause: {_clip(out['probable_cause'], 80)}"
    return line


def _delivery(record: dict[str, Any]) -> str:
    driver = record.get("driver") or "?"
    if record.get("earlier_attempt"):
        return f"{driver}: delivered in an earlier attempt"
    if record.get("error"):
        return f"{driver}: failed: {_clip(record['error'], 80)}"
    where = record.get("channel") or record.get("target")
    line = f"{driver}: {record.get('status') or 'delivered'}" + (f" to {where}" if where else "")
    return line + (f" (id {record['message_id']})" if record.get("message_id") else "")


def _notify(out: dict[str, Any]) -> str:
    deliveries = out.get("deliveries") or []
    if not deliveries:
        return "notify: nothing sent"
    return "; ".join(_delivery(d) for d in deliveries)


def _check(out: dict[str, Any]) -> str:
    checks = out.get("checks") or []
    if not checks:
        return "check: nothing checked"
    bad = [c for c in checks if c.get("status") != "ok"] or checks
    parts = []
    for c in bad[:3]:
        status = c.get("status")
        if c.get("type") == "threshold" and isinstance(c.get("value"), int | float):
            limit = c.get(status) if status in ("warning", "critical") else None
            op = "≥" if c.get("operator", ">=") == ">=" else c.get("operator")
            tail = f" {op} {status} {_num(limit)}" if limit is not None else f" {status}"
            parts.append(f"{c.get('name') or c.get('metric')} {_num(c['value'])}{tail}")
        else:
            parts.append(f"{c.get('name')} {status}")
    more = f" (+{len(bad) - 3} more)" if len(bad) > 3 else ""
    if bad is checks and all(c.get("status") == "ok" for c in checks):
        return f"check: all {len(checks)} ok"
    return f"check: {'; '.join(parts)}{more}"


def _context(out: dict[str, Any]) -> str:
    if out.get("collected") is False:
        return f"context: not collected: {out.get('skipped_reason') or 'skipped'}"
    groups = [key for key, value in out.items() if isinstance(value, dict)]
    return f"context: {', '.join(groups)}" if groups else "context: nothing collected"


def _condition(out: dict[str, Any]) -> str:
    taken = out.get("taken") or []
    taken = [taken] if isinstance(taken, str) else taken
    return f"branch {out.get('branch')}: {', '.join(taken) or 'nothing'}"


def _transform(out: dict[str, Any]) -> str:
    keys = list(out)
    return f"transform: {len(keys)} key{'s' if len(keys) != 1 else ''} ({_clip(', '.join(keys), 80)})"


def _approval(out: dict[str, Any]) -> str:
    line = f"approval: {out.get('decision')} by {out.get('by') or 'unknown'}"
    if out.get("timed_out"):
        line += " (timed out)"
    return line + (f" — {_clip(out['comment'], 100)!r}" if out.get("comment") else "")


def _command(out: dict[str, Any]) -> str:
    program = _clip(" ".join(str(a) for a in (out.get("argv") or ["?"])[:2]), 60)
    if out.get("dry_run"):
        return f"command: would run {program} in {out.get('cwd')}"
    line = f"command: {program} exited {out.get('exit_code')} in {(out.get('duration_ms') or 0) / 1000:.1f} s"
    used = []
    if isinstance(out.get("cpu_seconds"), int | float):
        used.append(f"cpu {out['cpu_seconds']:.2f} s")
    if isinstance(out.get("peak_rss_bytes"), int):
        used.append(f"peak RSS {out['peak_rss_bytes'] / 2**20:.0f} MiB")
    line += f" ({', '.join(used)})" if used else ""
    artifacts = [a for a in out.get("artifacts") or [] if a.get("valid")]
    if artifacts:
        line += f", {len(artifacts)} artifact{'s' if len(artifacts) != 1 else ''} valid"
    return line + (", JSON output" if "parsed" in out else "")


SUMMARIES: dict[str, Callable[[dict[str, Any]], str]] = {
    "ingest": _ingest,
    "intelligence": _intelligence,
    "notify": _notify,
    "check": _check,
    "context": _context,
    "condition": _condition,
    "transform": _transform,
    "approval": _approval,
    "command": _command,
}


def summarize(node_type: str, output: Any) -> str:
    """The node's one line; a type without its own wording lists its output's keys."""
    if not isinstance(output, dict):
        return f"{node_type}: {_clip(repr(output), 80)}"
    shape = SUMMARIES.get(node_type)
    try:
        return _clip(shape(output)) if shape else _clip(f"{node_type}: {', '.join(output) or 'no output'}")
    except Exception as exc:  # a summary never fails a node that succeeded
        return f"{node_type}: (no summary: {type(exc).__name__})"


def failure_summary(message: str) -> str:
    """A failed node's line: the first line of its error."""
    return _clip((str(message).strip().splitlines() or ["failed"])[0])
