"""`zabbix` format: a Zabbix webhook media type (host, trigger, PROBLEM/OK status)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.errors import IngestError
from nodes.ingest.alert import Parsed, hash_key, make_alert, map_severity, text, timestamp

SHAPE = "`trigger` or `trigger_id` with `status` PROBLEM/OK (a Zabbix webhook)"

_STATUSES = {"problem": "firing", "ok": "resolved", "resolved": "resolved"}
_TRIGGER_IN_LINK = re.compile(r"[?&]triggerid=(\d+)")


class Config(BaseModel):
    """Zabbix needs no settings: the media type's fields say which trigger and in what state."""

    model_config = ConfigDict(extra="forbid")


def detect(payload: dict[str, Any]) -> bool:
    has_trigger = any(k in payload for k in ("trigger", "trigger_id", "triggerid"))
    status = payload.get("status")
    return has_trigger and isinstance(status, str) and status.lower() in _STATUSES


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """One alert per trigger: PROBLEM and OK events have different event ids, so the
    trigger id (a field, or `triggerid=` in the event link) is the dedupe key."""
    raw_status = text(payload.get("status"), "status", limit=32, required=True)
    status = _STATUSES.get(raw_status.lower())
    if status is None:
        raise IngestError(f"status: {raw_status!r} is not PROBLEM, OK or RESOLVED")
    host = text(payload.get("hostname") or payload.get("host"), "hostname", limit=1024) or ""
    trigger = text(payload.get("trigger"), "trigger", limit=2048, truncate=True)
    item = text(payload.get("item"), "item", limit=2048, truncate=True)
    link = text(payload.get("link"), "link", limit=4096)
    trigger_id = text(payload.get("trigger_id") or payload.get("triggerid"), "trigger_id", limit=64)
    if trigger_id is None and link and (match := _TRIGGER_IN_LINK.search(link)):
        trigger_id = match.group(1)
    key = f"zabbix:{trigger_id}" if trigger_id else f"zabbix:{hash_key(host, item or trigger)}"
    severity = text(payload.get("severity"), "severity", limit=64)
    labels = {
        "host": host,
        "trigger_id": trigger_id or "",
        "item": item or "",
        "zabbix_severity": severity or "",
    }
    event_time = timestamp(payload.get("event_time") or payload.get("time"), "event_time")
    alert = make_alert(
        where="zabbix",
        fingerprint=key,
        status=status,
        severity=map_severity(severity),
        title=trigger or item or f"Zabbix trigger {trigger_id}",
        description=payload.get("message") or payload.get("description") or item,
        labels={k: v for k, v in labels.items() if v},
        annotations={"link": link} if link else {},
        source="zabbix",
        starts_at=event_time if status == "firing" else None,
        ends_at=event_time if status == "resolved" else None,
        generator_url=link,
    )
    return Parsed(alerts=[alert], group_key=key, title=alert["title"])
