"""What the local rules conclude from an alert's own labels, annotations and expression.

Without metrics of the target, the honest cause is the category of the alert's condition
(a crash loop, a filling disk, ...) or a plain "none found"; it is never the `summary`
annotation restated, and never a number measured on another host.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CATEGORIES",
    "alert_expr",
    "category",
    "cause",
    "measured",
    "neighbours",
    "queries_by_expr",
    "recommendations",
    "target_signals",
]

# (category, words in the alert name or expression, the cause, the metric or query to open)
CATEGORIES: list[tuple[str, tuple[str, ...], str, str]] = [
    (
        "restarts",
        ("restart", "crashloop", "backoff", "oomkill"),
        "the workload on {where} keeps restarting (crash loop or OOM kill)",
        "kube_pod_container_status_restarts_total{{{sel}}}",
    ),
    (
        "availability",
        (
            "instancedown",
            "targetdown",
            "up ==",
            "up==",
            "unreachable",
            "absent(",
            "nodata",
            "deadman",
            "down",
            "probe",
        ),
        "{where} is not answering its health or scrape check "
        "(process stopped, host down or network path broken)",
        "up{{{sel}}}",
    ),
    (
        "disk",
        ("disk", "filesystem", "inode", "volume", "storage", "space"),
        "the filesystem{mount} on {where} is filling up",
        "node_filesystem_avail_bytes{{{sel}}}",
    ),
    (
        "memory",
        ("memory", "oom", "mem_", "swap"),
        "memory pressure on {where}",
        "node_memory_MemAvailable_bytes{{{sel}}}",
    ),
    (
        "cpu",
        ("cpu", "throttl"),
        "CPU saturation on {where}",
        'rate(node_cpu_seconds_total{{{sel},mode!="idle"}}[5m])',
    ),
    ("load", ("load",), "more runnable tasks than CPUs on {where}", "node_load1{{{sel}}}"),
    (
        "certificate",
        ("cert", "ssl", "tls", "expir"),
        "a certificate served by {where} is near or past expiry",
        "probe_ssl_earliest_cert_expiry{{{sel}}}",
    ),
    (
        "replication",
        ("replica", "replication", "lag"),
        "replication on {where} is falling behind",
        "",
    ),
    ("queue", ("queue", "backlog", "consumer"), "work is piling up in a queue on {where}", ""),
    (
        "latency",
        ("latency", "slow", "duration", "p99", "p95", "response_time"),
        "requests to {where} are slow",
        "",
    ),
    ("errors", ("error", "5xx", "failure", "failed"), "requests to {where} are failing (error rate up)", ""),
]


def alert_expr(alert: dict[str, Any]) -> str | None:
    """The PromQL of the alert's rule, from an Alertmanager `generatorURL` (`g0.expr`)."""
    url = alert.get("generator_url") or ""
    try:
        query = parse_qs(urlsplit(str(url)).query)
    except ValueError:
        return None
    exprs = query.get("g0.expr")
    expr = exprs[0] if exprs else None
    return expr.strip() if expr and expr.strip() else None


def category(alert: dict[str, Any]) -> str | None:
    """The kind of problem the alert's name describes, else its expression, or None.

    Names match by word (`PostgresSlowQueries` is about slowness, not `ssl`); the
    expression, which has no camel case to split, by substring.
    """
    labels = alert.get("labels") or {}
    name = " ".join(str(x or "") for x in (labels.get("alertname"), alert.get("title")))
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", " ", name).lower()
    tokens = re.findall(r"[a-z0-9]+", spaced)
    squashed = "".join(tokens)
    for found, words, _, _ in CATEGORIES:
        if any((len(w) >= 6 and w in squashed) or any(t.startswith(w) for t in tokens) for w in words):
            return found
    expr = (alert_expr(alert) or "").lower()
    for found, words, _, _ in CATEGORIES:
        if expr and any(word in expr for word in words):
            return found
    return None


def _where(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    for key in ("pod", "instance", "host", "node", "service", "job"):
        if labels.get(key):
            return str(labels[key])
    return "the target"


def _selector(alert: dict[str, Any]) -> str:
    labels = alert.get("labels") or {}
    keys = [k for k in ("instance", "pod", "namespace", "job") if labels.get(k)][:2]
    return ",".join(f'{k}="{labels[k]}"' for k in keys)


def queries_by_expr(nodes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The `prometheus` context source's queries of this run, by expression."""
    found = {}
    for out in nodes.values():
        record = out.get("prometheus") if isinstance(out, dict) else None
        for query in (record or {}).get("queries") or [] if isinstance(record, dict) else []:
            if isinstance(query, dict) and query.get("expr"):
                found[str(query["expr"])] = query
    return found


def measured(query: dict[str, Any]) -> str | None:
    """`now 42 (at firing 40, min 38, max 42, rising) on 1 series`, or why there is no number."""
    if query.get("status") != "ok":
        return f"the query failed ({query.get('error')})" if query.get("error") else None
    series = [s for s in query.get("series") or [] if "now" in s]
    if not series:
        return "the expression returns no series now (the condition may have cleared)"
    top = max(series, key=lambda s: s["now"])
    text = (
        f"now {top['now']} (at firing {top['at_firing']}, min {top['min']}, max {top['max']}, {top['trend']})"
    )
    total = query.get("series_total") or len(series)
    return text + (f", highest of {total} series" if total > 1 else "")


def cause(alert: dict[str, Any], query: dict[str, Any] | None = None) -> str:
    """A cause sentence, or a plain statement that none was found."""
    found = category(alert)
    expr = alert_expr(alert)
    condition = f" (its condition: `{expr}`)" if expr else ""
    seen = measured(query) if query else None
    if not found:
        if seen:
            return f"None found beyond the alert's own condition{condition}; Prometheus: {seen}."
        return (
            f"None found: nothing beyond the alert itself{condition} was available about {_where(alert)}, "
            "and no metrics of that target were collected."
        )
    labels = alert.get("labels") or {}
    mount = labels.get("mountpoint") or labels.get("device")
    text = next(c for n, _, c, _ in CATEGORIES if n == found).format(
        where=_where(alert), mount=f" {mount}" if mount else ""
    )
    holds = f"the alert's condition `{expr}` holds" if expr else "the alert says so"
    said = f"{holds}; " + (f"Prometheus: {seen}" if seen else "no metrics of the target confirm it yet")
    return f"{text[0].upper()}{text[1:]}: {said}."


def recommendations(alert: dict[str, Any], priority: str) -> list[dict[str, str]]:
    """Specific next steps: the runbook, the query to open, the metric to look at."""
    notes = alert.get("annotations") or {}
    name = alert.get("title") or (alert.get("labels") or {}).get("alertname") or "the alert"
    where = _where(alert)
    recs = []
    if notes.get("runbook_url"):
        recs.append(_rec(f"Follow the runbook for {name}", str(notes["runbook_url"]), priority))
    expr = alert_expr(alert)
    if alert.get("generator_url"):
        what = f"`{expr}`" if expr else "the alert's source"
        recs.append(_rec(f"Open the query of {name}", f"{what}: {alert['generator_url']}", priority))
    found = category(alert)
    metric = next((m for n, _, _, m in CATEGORIES if n == found), "")
    if metric and _selector(alert):
        query = metric.format(sel=_selector(alert))
        recs.append(
            _rec(f"Graph {query}", f"The metric behind {found} on {where}, over the last hour.", priority)
        )
    if notes.get("dashboard") or notes.get("dashboard_url"):
        recs.append(
            _rec("Open the dashboard", str(notes.get("dashboard") or notes.get("dashboard_url")), priority)
        )
    if not recs:
        started = alert.get("starts_at") or "an unknown time"
        recs.append(
            _rec(
                f"Investigate {name} on {where}",
                f"Reported by {alert.get('source') or 'the alert source'}, firing since {started}.",
                priority,
            )
        )
    return recs


def _rec(title: str, description: str, priority: str) -> dict[str, str]:
    return {"title": title, "description": description, "priority": priority}


def neighbours(nodes: dict[str, Any]) -> tuple[str | None, str | None]:
    """(`also firing for instance=db-7: DiskFull (critical), ...`, `silenced by ...`) from the
    `alertmanager` context source, or None for each when it found nothing (or did not run)."""
    for out in nodes.values():
        record = out.get("alertmanager") if isinstance(out, dict) else None
        if not isinstance(record, dict) or not record.get("key"):
            continue
        others = record.get("others") or []
        also = None
        if others:
            names = ", ".join(
                f"{o.get('alertname')} ({o.get('severity') or 'no severity'})" for o in others[:8]
            )
            more = (record.get("others_total") or len(others)) - min(8, len(others))
            also = f"also firing for {record['key']}: {names}" + (f" (+{more} more)" if more > 0 else "")
        silences = record.get("silences") or []
        hushed = None
        if silences:
            first = silences[0]
            hushed = (
                f"{len(silences)} active silence(s) match, e.g. {first.get('id')} "
                f"by {first.get('created_by')}: {first.get('comment')!r} until {first.get('ends_at')}"
            )
        return also, hushed
    return None, None


def target_signals(nodes: dict[str, Any]) -> str | None:
    """`up 1, memory used 75% (rising), load1 3.5`: the target's standard signals from Prometheus."""
    for out in nodes.values():
        record = out.get("prometheus") if isinstance(out, dict) else None
        if not isinstance(record, dict) or not record.get("signals"):
            continue
        parts = []
        for signal in record["signals"]:
            series = [x for x in signal.get("series") or [] if "now" in x]
            if signal.get("status") != "ok" or not series:
                continue
            now, trend = series[0]["now"], series[0]["trend"]
            ratio = any(word in signal["name"] for word in ("cpu", "memory", "disk"))
            value = f"{now * 100:.0f}%" if ratio else f"{now:g}"
            parts.append(f"{signal['name']} {value}" + (f" ({trend})" if trend != "flat" else ""))
        if parts:
            return ", ".join(parts)
    return None
