"""`grafana` format: Grafana unified alerting webhooks and legacy (dashboard) alert webhooks."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.errors import IngestError
from nodes.ingest.alert import Parsed, hash_key, make_alert, map_severity, string_map, text
from nodes.ingest.alertmanager import parse_group

SHAPE = "an `alerts` list with `orgId`/`state` (unified) or `ruleName` + `state` (legacy)"

_UNIFIED_MARKS = ("orgId", "state", "title")
_ALERT_MARKS = ("silenceURL", "dashboardURL", "panelURL", "values", "valueString")
_LEGACY_STATES = {"alerting": "firing", "no_data": "firing", "ok": "resolved"}


class Config(BaseModel):
    """Grafana needs no settings: unified alerts carry their own status and labels."""

    model_config = ConfigDict(extra="forbid")


def detect(payload: dict[str, Any]) -> bool:
    alerts = payload.get("alerts")
    if isinstance(alerts, list):
        if any(mark in payload for mark in _UNIFIED_MARKS):
            return True
        return any(isinstance(a, dict) and any(m in a for m in _ALERT_MARKS) for a in alerts)
    return ("ruleName" in payload or "ruleId" in payload) and "state" in payload


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """Unified payloads are Alertmanager-shaped; legacy ones hold one rule's state."""
    if "alerts" in payload or "ruleName" not in payload and "ruleId" not in payload:
        parsed = parse_group(payload, source="grafana")
        org = text(payload.get("orgId"), "orgId", limit=64) or ""
        parsed.group_key = f"grafana:{org}:{parsed.group_key.removeprefix('grafana:')}"
        return parsed
    return _legacy(payload)


def _legacy(payload: dict[str, Any]) -> Parsed:
    state = (text(payload.get("state"), "state", limit=32, required=True) or "").lower()
    if state in ("pending", "paused"):
        return Parsed(ignored=f"Grafana legacy alert state {state!r} is not an alert")
    status = _LEGACY_STATES.get(state)
    if status is None:
        raise IngestError(f"state: {state!r} is not one of alerting, no_data, ok, pending, paused")
    tags = string_map(payload.get("tags"), "tags")
    org = text(payload.get("orgId"), "orgId", limit=64)
    rule_id = text(payload.get("ruleId"), "ruleId", limit=64)
    rule = text(payload.get("ruleName"), "ruleName", limit=1024) or f"rule {rule_id}"
    fingerprint = hash_key("grafana-legacy", org, rule_id, rule)
    default = "warning" if state == "no_data" else "critical"
    labels = {"alertname": rule, **tags}
    if state == "no_data":
        labels["grafana_state"] = "no_data"
    alert = make_alert(
        where="grafana legacy alert",
        fingerprint=fingerprint,
        status=status,
        severity=map_severity(tags.get("severity"), default),
        title=rule,
        description=payload.get("message"),
        labels=labels,
        annotations={k: v for k, v in _annotations(payload).items() if v},
        source="grafana",
        generator_url=payload.get("ruleUrl") or None,
    )
    return Parsed(alerts=[alert], group_key=f"grafana-legacy:{fingerprint}", title=rule)


def _annotations(payload: dict[str, Any]) -> dict[str, str]:
    return {
        "title": text(payload.get("title"), "title", limit=1024, truncate=True) or "",
        "image_url": text(payload.get("imageUrl"), "imageUrl", limit=4096) or "",
        "dashboard_id": text(payload.get("dashboardId"), "dashboardId", limit=64) or "",
        "panel_id": text(payload.get("panelId"), "panelId", limit=64) or "",
    }
