"""What a message says about its alerts: the target, the labels, the links, and how a resolve ended.

Kept apart from `message.py` so the message builder stays about choosing, not collecting.
"""

from __future__ import annotations

import os
from datetime import UTC
from typing import Any
from urllib.parse import quote

from nodes.ingest.alert import stored_moment

__all__ = [
    "alert_lines",
    "alert_links",
    "fired_for",
    "original",
    "label_text",
    "neighbours",
    "prefect_link",
    "prometheus_value",
    "split_alerts",
    "target_of",
    "target_signals",
]

_TARGET_LABELS = ("instance", "host", "hostname", "node", "pod", "service", "job")
LABELS_SHOWN = 12  # labels beyond this collapse into "+N more"


def target_of(alert: dict[str, Any]) -> str | None:
    """The thing the alert is about: its instance (or host, node, pod, service, job) label."""
    labels = alert.get("labels") or {}
    for key in _TARGET_LABELS:
        if labels.get(key):
            return str(labels[key])
    return alert.get("host") or None


def label_text(labels: dict[str, Any], limit: int = LABELS_SHOWN) -> str:
    """`k=v, k=v` for every label, collapsed to `+N more` past `limit` (alertname comes first)."""
    keys = sorted(labels, key=lambda k: (k != "alertname", k))
    shown = ", ".join(f"{k}={labels[k]}" for k in keys[:limit])
    return shown + (f", +{len(keys) - limit} more" if len(keys) > limit else "")


def split_alerts(incident: dict[str, Any] | None) -> tuple[list[dict], list[dict]]:
    """(firing, resolved) alerts of the incident."""
    alerts = (incident or {}).get("alerts") or []
    firing = [a for a in alerts if a.get("status", "firing") == "firing"]
    return firing, [a for a in alerts if a.get("status") == "resolved"]


def alert_name(alert: dict[str, Any]) -> str:
    """`HighMemory on db-7`: distinct per alert of a group, unlike the bare title."""
    name = alert.get("title") or (alert.get("labels") or {}).get("alertname") or "alert"
    where = target_of(alert)
    return f"{name} on {where}" if where else str(name)


def fired_for(incident: dict[str, Any] | None) -> str | None:
    """`42m` from the first alert's start to the resolve, when both moments are known."""
    incident = incident or {}
    alerts = incident.get("alerts") or []
    starts = [s for s in (stored_moment(a.get("starts_at")) for a in alerts) if s]
    ends = [e for e in (stored_moment(a.get("ends_at")) for a in alerts) if e]
    ends = ends or [m for m in [stored_moment(incident.get("resolved_at"))] if m]
    if not starts or not ends:
        return None
    seconds = (max(ends) - min(starts)).total_seconds()
    if seconds < 0:
        return None
    return _duration(seconds)


def _duration(seconds: float) -> str:
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m"
    return f"{sec}s"


def _safe(url: Any) -> str | None:
    """Only http(s) links reach a message: an alert must not be able to plant `javascript:`."""
    text = str(url or "").strip()
    return text if text.lower().startswith(("http://", "https://")) else None


def alert_links(incident: dict[str, Any] | None, payload: Any) -> list[dict[str, str]]:
    """Source links: each alert's generatorURL, Grafana panel/dashboard/silence, Alertmanager + silence."""
    links: list[dict[str, str]] = []
    alerts = (incident or {}).get("alerts") or []
    raw = payload.get("alerts") if isinstance(payload, dict) else None
    raw_by_fp = {}
    if isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict) and entry.get("fingerprint"):
                raw_by_fp[str(entry["fingerprint"])] = entry

    def add(title: str, url: Any) -> None:
        url = _safe(url)
        if url and all(link["url"] != url for link in links):
            links.append({"title": title, "url": url})

    for alert in alerts:
        name = alert_name(alert) if len(alerts) > 1 else (alert.get("title") or "alert")
        add(f"Source: {name}", alert.get("generator_url"))
        entry = raw_by_fp.get(str(alert.get("fingerprint")), {})
        add(f"Grafana panel: {name}", entry.get("panelURL"))
        add(
            f"Dashboard: {name}",
            entry.get("dashboardURL") or (alert.get("annotations") or {}).get("dashboard"),
        )
        add(f"Silence: {name}", entry.get("silenceURL"))
    external = _safe(payload.get("externalURL")) if isinstance(payload, dict) else None
    if external and alerts:
        add("Alertmanager", external)
        common = (incident or {}).get("labels") or {}
        matchers = {k: common[k] for k in ("alertname", "instance", "job") if common.get(k)}
        if matchers:
            flt = "{" + ",".join(f'{k}="{v}"' for k, v in matchers.items()) + "}"
            add("Silence in Alertmanager", f"{external.rstrip('/')}/#/silences/new?filter={quote(flt)}")
    return links[:8]


def prefect_link(run: dict[str, Any]) -> dict[str, str] | None:
    """The flow run's page, only when a real Prefect API server is configured.

    Without PREFECT_API_URL the run used an embedded server whose URL is dead once
    the command ends: a link to it would lead nowhere.
    """
    if not os.environ.get("PREFECT_API_URL"):
        return None
    url = _safe(run.get("ui_url"))
    return {"title": "Prefect flow run", "url": url} if url else None


def prometheus_value(nodes: dict[str, Any]) -> str | None:
    """`now 42 (at firing 40, ...)` of the alert's expression, from the `prometheus` context source."""
    from nodes.intelligence.alerts import measured, queries_by_expr

    for query in queries_by_expr(nodes).values():
        if text := measured(query):
            return text
    return None


def original(incident: dict[str, Any] | None, headline: str) -> str:
    """`FIRING: HighMemory, since 2026-11-30 09:12 UTC`: the page a resolve answers."""
    starts = [
        m for m in (stored_moment(a.get("starts_at")) for a in (incident or {}).get("alerts") or []) if m
    ]
    since = f", since {min(starts).astimezone(UTC):%Y-%m-%d %H:%M} UTC" if starts else ""
    return f"FIRING: {headline}{since}"


def neighbours(nodes: dict[str, Any]) -> tuple[str | None, str | None]:
    """Other alerts of the target and matching silences, from the `alertmanager` context source."""
    from nodes.intelligence.alerts import neighbours as found

    return found(nodes)


def target_signals(nodes: dict[str, Any]) -> str | None:
    """The target's standard signals (up, cpu, memory, disk, load, restarts) from Prometheus."""
    from nodes.intelligence.alerts import target_signals as found

    return found(nodes)


def alert_lines(incident: dict[str, Any] | None, limit: int = 10) -> list[str]:
    """For a group: one line per alert with the labels the group does not share (collapsed if long)."""
    alerts = (incident or {}).get("alerts") or []
    if len(alerts) < 2:
        return []
    common = (incident or {}).get("labels") or {}
    lines = []
    for alert in alerts[:limit]:
        own = {k: v for k, v in (alert.get("labels") or {}).items() if common.get(k) != v}
        own.pop("alertname", None)
        state = "" if alert.get("status", "firing") == "firing" else " (resolved)"
        lines.append(
            f"{alert_name(alert)}{state}: {label_text(own, 6)}" if own else alert_name(alert) + state
        )
    if len(alerts) > limit:
        lines.append(f"+{len(alerts) - limit} more")
    return lines
