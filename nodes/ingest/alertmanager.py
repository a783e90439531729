"""`alertmanager` format: the Prometheus Alertmanager webhook (version 4)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.errors import IngestError
from nodes.ingest.alert import (
    Parsed,
    as_list,
    as_object,
    common_labels,
    label_fingerprint,
    make_alert,
    map_severity,
    string_map,
    text,
    timestamp,
)

SHAPE = "an `alerts` list of alerts with `status` and `labels` (webhook version 4)"

_STATUSES = {"firing": "firing", "resolved": "resolved"}


class Config(BaseModel):
    """Alertmanager needs no settings: every alert carries its own status and labels."""

    model_config = ConfigDict(extra="forbid")


def detect(payload: dict[str, Any]) -> bool:
    return isinstance(payload.get("alerts"), list)


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """Alerts keyed by their own fingerprint, grouped by the receiver and `groupKey`.

    Each alert's `status` is trusted, not `endsAt` (a firing alert carries a future
    `endsAt`); `truncatedAlerts` (alerts Alertmanager left out of a group over its
    `max_alerts`) is kept as `truncated_alerts`; other unknown keys are ignored.
    """
    return parse_group(payload, source="alertmanager")


def parse_group(payload: dict[str, Any], *, source: str) -> Parsed:
    """The Alertmanager-shaped group shared with Grafana's unified alerting."""
    if "alerts" not in payload:
        raise IngestError(f"{source} payload: `alerts` is missing (expected a list of alerts)")
    entries = as_list(payload["alerts"], f"{source} payload: alerts")
    if not entries:
        raise IngestError(f"{source} payload: `alerts` is empty")
    alerts = [_alert(entry, f"alerts[{i}]", source) for i, entry in enumerate(entries)]
    group_labels = string_map(payload.get("groupLabels"), "groupLabels")
    common = string_map(payload.get("commonLabels"), "commonLabels") or common_labels(alerts)
    group_key = text(payload.get("groupKey"), "groupKey", limit=8192)
    receiver = text(payload.get("receiver"), "receiver", limit=1024) or ""
    if group_key is None:
        group_key = label_fingerprint(group_labels or common)
    title = (
        group_labels.get("alertname")
        or common.get("alertname")
        or string_map(payload.get("commonAnnotations"), "commonAnnotations").get("summary")
        or alerts[0]["title"]
    )
    parsed = Parsed(alerts=alerts, group_key=f"{source}:{receiver}:{group_key}", title=title)
    truncated = _truncated(payload.get("truncatedAlerts"))
    if truncated:
        parsed.extra["truncated_alerts"] = truncated
    return parsed


def _truncated(value: Any) -> int:
    """`truncatedAlerts`: a count (absent or null is none)."""
    if value is None:
        return 0
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or value < 0 or value > 10**9:
        raise IngestError(f"truncatedAlerts: expected a count of alerts, got {str(value)[:32]!r}")
    return value


def _alert(entry: Any, where: str, source: str) -> dict[str, Any]:
    entry = as_object(entry, where)
    labels = string_map(entry.get("labels"), f"{where}.labels")
    annotations = string_map(entry.get("annotations"), f"{where}.annotations", value_limit=65_536)
    raw_status = text(entry.get("status"), f"{where}.status", limit=32) or "firing"
    status = _STATUSES.get(raw_status.lower())
    if status is None:
        raise IngestError(f"{where}.status: {raw_status!r} is not firing or resolved")
    severity = labels.get("severity") or labels.get("priority") or annotations.get("severity")
    return make_alert(
        where=where,
        fingerprint=entry.get("fingerprint") or label_fingerprint(labels),
        status=status,
        severity=map_severity(severity),
        title=labels.get("alertname") or annotations.get("summary") or "Alertmanager alert",
        description=(
            annotations.get("description") or annotations.get("summary") or annotations.get("message")
        ),
        labels=labels,
        annotations=annotations,
        source=source,
        starts_at=timestamp(entry.get("startsAt"), f"{where}.startsAt"),
        ends_at=timestamp(entry.get("endsAt"), f"{where}.endsAt") if status == "resolved" else None,
        generator_url=entry.get("generatorURL") or None,
    )
