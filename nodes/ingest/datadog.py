"""`datadog` format: a Datadog webhook integration payload (default or custom template)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.ingest.alert import Parsed, hash_key, make_alert, map_severity, string_map, text, timestamp

SHAPE = "`title` with `event_type` and `body`/`date`/`alert_id` (a Datadog webhook)"

_TRANSITION = re.compile(r"^\s*\[(triggered|re-triggered|recovered|warn|no data|renotify)\]\s*", re.I)
_RESOLVED = {"recovered", "success"}
_ALERT_TYPE = {"error": "critical", "warning": "warning", "info": "info", "success": "info"}
_MARKS = ("body", "date", "last_updated", "alert_id", "alert_transition", "org")


class Config(BaseModel):
    """Datadog needs no settings; custom templates may add `alert_transition`, `alert_id`, `tags`."""

    model_config = ConfigDict(extra="forbid")


def detect(payload: dict[str, Any]) -> bool:
    return "title" in payload and "event_type" in payload and any(m in payload for m in _MARKS)


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """Status from `alert_transition`, else from the title's `[Triggered]`/`[Recovered]` prefix.

    The event `id` changes with every notification; the monitor (`aggregate`, or
    `alert_id` + scope, or the title without its transition prefix) is the dedupe key.
    """
    title = text(payload.get("title"), "title", limit=4096, required=True, truncate=True)
    match = _TRANSITION.match(title)
    transition = text(payload.get("alert_transition"), "alert_transition", limit=64)
    transition = (transition or (match.group(1) if match else "triggered")).lower()
    status = "resolved" if transition in _RESOLVED else "firing"
    name = title[match.end() :] if match else title
    alert_type = (text(payload.get("alert_type"), "alert_type", limit=64) or "").lower()
    default = "warning" if transition == "warn" else "critical"
    severity = _ALERT_TYPE.get(alert_type) or map_severity(payload.get("priority"), default)
    scope = text(payload.get("alert_scope") or payload.get("hostname"), "alert_scope", limit=1024)
    aggregate = text(payload.get("aggregate"), "aggregate", limit=256)
    alert_id = text(payload.get("alert_id"), "alert_id", limit=256)
    if aggregate:
        fingerprint = f"datadog:{aggregate}"
    elif alert_id:
        fingerprint = f"datadog:{alert_id}:{hash_key(scope or '')}"
    else:
        fingerprint = f"datadog:{hash_key(name, scope or '')}"
    labels = {
        "alertname": name,
        "event_type": text(payload.get("event_type"), "event_type", limit=256) or "",
        "alert_id": alert_id or "",
        "scope": scope or "",
        **_tags(payload.get("tags")),
    }
    when = timestamp(payload.get("last_updated") or payload.get("date"), "date")
    alert = make_alert(
        where="datadog",
        fingerprint=fingerprint,
        status=status,
        severity=severity,
        title=name,
        description=payload.get("body"),
        labels={k: v for k, v in labels.items() if v},
        annotations=string_map({"event_id": payload.get("id"), "transition": transition}, "id"),
        source="datadog",
        starts_at=when if status == "firing" else None,
        ends_at=when if status == "resolved" else None,
        generator_url=payload.get("link") or payload.get("url"),
    )
    return Parsed(alerts=[alert], group_key=fingerprint, title=name)


def _tags(value: Any) -> dict[str, str]:
    """Datadog tags (`env:prod,team:db` or a list) as labels."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return {}
    labels = {}
    for i, tag in enumerate(value[:64]):
        tag = text(tag, f"tags[{i}]", limit=1024) or ""
        name, _, val = tag.strip().partition(":")
        if name and name not in ("alertname", "scope", "alert_id", "event_type"):
            labels[name[:256]] = val
    return labels
