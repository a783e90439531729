"""`generic` format: a minimal JSON alert for senders without a format of their own."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.errors import IngestError
from nodes.ingest.alert import (
    Parsed,
    label_fingerprint,
    make_alert,
    map_severity,
    string_map,
    text,
    timestamp,
)

SHAPE = "`title` with optional `severity`, `description`, `status`, `fingerprint`, `labels`"

_STATUSES = {
    "firing": "firing",
    "problem": "firing",
    "alert": "firing",
    "alarm": "firing",
    "triggered": "firing",
    "resolved": "resolved",
    "ok": "resolved",
    "recovered": "resolved",
}


class Config(BaseModel):
    """The generic format needs no settings."""

    model_config = ConfigDict(extra="forbid")


def detect(payload: dict[str, Any]) -> bool:
    return isinstance(payload.get("title"), str)


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """One alert; without a `fingerprint` it is keyed on its title and labels, so a
    repeat of the same alert is recognised."""
    title = text(payload.get("title"), "title", limit=1024, required=True, truncate=True)
    labels = string_map(payload.get("labels"), "labels")
    raw_status = text(payload.get("status"), "status", limit=32) or "firing"
    status = _STATUSES.get(raw_status.lower())
    if status is None:
        raise IngestError(f"status: {raw_status!r} is not firing or resolved")
    fingerprint = payload.get("fingerprint") or label_fingerprint({"__title__": title, **labels})
    alert = make_alert(
        where="generic",
        fingerprint=fingerprint,
        status=status,
        severity=map_severity(text(payload.get("severity"), "severity", limit=64)),
        title=title,
        description=payload.get("description") or payload.get("message"),
        labels=labels,
        annotations=string_map(payload.get("annotations"), "annotations", value_limit=65_536),
        source=text(payload.get("source"), "source", limit=64) or "generic",
        starts_at=timestamp(payload.get("starts_at"), "starts_at"),
        ends_at=timestamp(payload.get("ends_at"), "ends_at"),
        generator_url=payload.get("generator_url") or payload.get("url"),
    )
    return Parsed(alerts=[alert], group_key=f"generic:{alert['fingerprint']}", title=title)
