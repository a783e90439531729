"""The rules of the `local` provider: what counts as a problem in metrics, checks and alerts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nodes.base import NodeContext
from nodes.context import alert_targets_elsewhere
from nodes.intelligence import alerts as alert_rules
from nodes.intelligence.prompt import split_outputs

__all__ = ["THRESHOLDS", "Finding", "findings"]

# metric -> (warning, critical); values at or above the bound trip it.
THRESHOLDS: dict[str, tuple[float, float]] = {
    "memory": (80.0, 90.0),
    "disk": (80.0, 90.0),
    "cpu": (80.0, 90.0),
    "load": (1.0, 2.0),  # 1-minute load average per CPU
}
_RANK = {"critical": 0, "warning": 1, "info": 2}
_PRIORITY = {"critical": "critical", "warning": "medium", "info": "low"}


@dataclass
class Finding:
    key: str
    severity: str
    summary: str
    cause: str
    recommendations: list[dict[str, str]] = field(default_factory=list)


def findings(ctx: NodeContext) -> list[Finding]:
    """Every problem the rules see, most severe first (stable order within a severity)."""
    contexts, checks, _ = split_outputs(ctx)
    found: list[Finding] = []
    if ctx.incident:
        found.extend(_incident(ctx.incident, alert_rules.queries_by_expr(ctx.nodes)))
        also, hushed = alert_rules.neighbours(ctx.nodes)
        signals = alert_rules.target_signals(ctx.nodes)
        notes = (f"target now: {signals}" if signals else None, also, hushed)
        if found and any(notes):  # the target's own state and other troubles (Prometheus, Alertmanager)
            extra = " ".join(f"{t[0].upper()}{t[1:]}." for t in notes if t)
            found[0].summary = f"{found[0].summary} {extra}"
    for _node_id, out in contexts:
        # psutil measured the opsflow host: for an alert about another target, its
        # numbers are not the target's and are never given as the cause
        if out.get("not_the_alert_target") or alert_targets_elsewhere(ctx.incident, out.get("hostname")):
            continue
        found.extend(_host(out))
    seen = {f.key for f in found}
    for node_id, out in checks:
        for check in out.get("checks") or []:
            finding = _check(node_id, check)
            if finding and finding.key not in seen:
                found.append(finding)
                seen.add(finding.key)
    return sorted(found, key=lambda f: _RANK[f.severity])


def _level(key: str, value: Any) -> str | None:
    if not isinstance(value, int | float):
        return None
    warning, critical = THRESHOLDS[key]
    return "critical" if value >= critical else "warning" if value >= warning else None


def _rec(title: str, description: str, severity: str) -> dict[str, str]:
    return {"title": title, "description": description, "priority": _PRIORITY[severity]}


def _host(out: dict[str, Any]) -> list[Finding]:
    host = out.get("hostname") or "the host"
    found = []
    memory = out.get("memory") or {}
    if level := _level("memory", memory.get("percent")):
        top = ((out.get("processes") or {}).get("top_memory") or [])[:3]
        names = ", ".join(f"{p.get('name')} (pid {p.get('pid')}, {p.get('memory_percent')}%)" for p in top)
        summary = f"Memory at {memory['percent']}% on {host}" + (
            f"; top consumers: {names}." if names else "."
        )
        cause = (
            f"Memory pressure; the largest consumer is {top[0].get('name')} "
            f"({top[0].get('memory_percent')}% of memory)."
            if top
            else "Memory pressure."
        )
        recs = (
            [
                _rec(
                    f"Inspect {top[0].get('name')} (pid {top[0].get('pid')})",
                    "Check it for a leak or runaway workload; restart or cap it if it keeps growing.",
                    level,
                )
            ]
            if top
            else []
        )
        recs.append(
            _rec("Relieve memory pressure", "Stop what is not needed, add memory or set limits.", level)
        )
        found.append(Finding("memory", level, summary, cause, recs))
    disk = out.get("disk") or {}
    if level := _level("disk", disk.get("percent")):
        path = disk.get("path") or "/"
        free = f", {_size(disk['free'])} free" if isinstance(disk.get("free"), int) else ""
        found.append(
            Finding(
                "disk",
                level,
                f"Disk {path} at {disk['percent']}% used on {host}{free}.",
                f"The filesystem mounted at {path} is filling up.",
                [
                    _rec(
                        f"Free space on {path}",
                        "Remove or rotate old logs, caches and temporary files.",
                        level,
                    ),
                    _rec(
                        f"Grow the volume behind {path}",
                        "If the growth is expected, add capacity.",
                        "warning",
                    ),
                ],
            )
        )
    cpu = out.get("cpu") or {}
    if level := _level("cpu", cpu.get("percent")):
        found.append(
            Finding(
                "cpu",
                level,
                f"CPU at {cpu['percent']}% on {host}.",
                "Sustained CPU saturation.",
                [_rec("Find the busiest processes", "Check top/pidstat for the processes using CPU.", level)],
            )
        )
    load = out.get("load") or {}
    if level := _level("load", load.get("per_cpu_1m")):
        found.append(
            Finding(
                "load",
                level,
                f"Load {load.get('1m')} ({load['per_cpu_1m']} per CPU) on {host}.",
                "More runnable or blocked tasks than CPUs; check CPU and I/O wait.",
                [
                    _rec(
                        "Check for I/O wait and runnable tasks",
                        "vmstat/iostat show whether CPU or disk is short.",
                        level,
                    )
                ],
            )
        )
    return found


def _check(node_id: str, check: dict[str, Any]) -> Finding | None:
    status = check.get("status")
    if status in (None, "ok"):
        return None
    severity = "critical" if status == "critical" else "warning"
    name = check.get("name") or check.get("metric") or "check"
    metric = str(check.get("metric") or name)
    message = check.get("message") or f"{name} is {status} (value {check.get('value')})"
    return Finding(
        metric.split(".")[0],
        severity,
        f"Check {name} is {status}: {message}.".replace("..", "."),
        f"{name} crossed its {status} threshold ({check.get(status) if status != 'unknown' else 'n/a'}).",
        [_rec(f"Investigate {name}", f"Reported by node {node_id}: {message}", severity)],
    )


def _incident(incident: dict[str, Any], queries: dict[str, dict] | None = None) -> list[Finding]:
    title = incident.get("title") or "untitled incident"
    if incident.get("status") == "resolved":
        return [
            Finding(
                "incident",
                "info",
                f"Incident resolved: {title}.",
                "The alerting condition cleared.",
                [
                    _rec(
                        "Confirm recovery",
                        "Check that the service is healthy and close the incident.",
                        "info",
                    )
                ],
            )
        ]
    firing = [a for a in incident.get("alerts") or [] if a.get("status", "firing") == "firing"]
    found = []
    for alert in sorted(firing, key=lambda a: _RANK.get(_severity(a), 2)):
        severity = _severity(alert)
        labels = alert.get("labels") or {}
        notes = alert.get("annotations") or {}
        where = ", ".join(
            f"{k}={labels[k]}" for k in ("instance", "job", "service", "namespace", "pod") if labels.get(k)
        )
        detail = alert.get("description") or notes.get("description") or notes.get("summary") or ""
        summary = f"{alert.get('title') or labels.get('alertname') or 'Alert'}" + (
            f" ({where})" if where else ""
        )
        summary += f": {detail}" if detail else ""
        query = (queries or {}).get(alert_rules.alert_expr(alert) or "")
        if query and (seen := alert_rules.measured(query)):
            summary = f"{summary.rstrip('.')}. Prometheus: {seen}"
        cause = alert_rules.cause(alert, query)
        recs = alert_rules.recommendations(alert, _PRIORITY[severity])
        key = f"alert:{alert.get('fingerprint') or summary}"
        found.append(Finding(key, severity, summary.rstrip(".") + ".", cause, recs))
    if len(found) > 3:  # one line for the tail, so a storm of alerts stays readable
        tail = found[3:]
        worst = min((f.severity for f in tail), key=_RANK.__getitem__)
        found = found[:3] + [Finding("alerts:more", worst, f"{len(tail)} more firing alert(s).", "", [])]
    return found


def _severity(alert: dict[str, Any]) -> str:
    value = str(alert.get("severity") or "").lower()
    return value if value in ("critical", "warning") else "critical" if value == "error" else "info"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
