"""`pagerduty` format: PagerDuty v3 webhook subscriptions (incident events), signature-checked."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.errors import IngestError
from nodes.ingest import HTTP_KEY
from nodes.ingest.alert import Parsed, as_object, make_alert, map_severity, text, timestamp

SHAPE = "an `event` object with `event_type` (e.g. `incident.triggered`)"

_RESOLVED_EVENTS = {"incident.resolved"}
_URGENCY = {"high": "critical", "low": "warning"}


class Config(BaseModel):
    """How to trust a PagerDuty webhook."""

    model_config = ConfigDict(extra="forbid")

    signing_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The webhook subscription's signing secret. When set, every payload must carry "
            "its raw body and headers under `_opsflow_http` and a matching "
            "`X-PagerDuty-Signature` (v1 = hex HMAC-SHA256 of the raw body)."
        ),
    )


def detect(payload: dict[str, Any]) -> bool:
    event = payload.get("event")
    return isinstance(event, dict) and "event_type" in event


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """One alert per PagerDuty incident, keyed by the incident id.

    With a signing secret the alert is read from the verified raw body, never from the
    parsed dict beside it, so what is stored is exactly what PagerDuty signed.
    """
    secret = config.signing_secret if config else None
    if secret is not None:
        payload = verified_body(payload, secret.get_secret_value())
    event = as_object(payload.get("event"), "event")
    event_type = text(event.get("event_type"), "event.event_type", limit=128, required=True)
    data = as_object(event.get("data"), "event.data", required=False)
    resource = text(event.get("resource_type"), "event.resource_type", limit=64)
    if resource != "incident" and not event_type.startswith("incident."):
        return Parsed(ignored=f"PagerDuty {event_type!r} event is not about an incident")
    incident_id = text(data.get("id"), "event.data.id", limit=128, required=True)
    state = text(data.get("status"), "event.data.status", limit=32)
    resolved = event_type in _RESOLVED_EVENTS or state == "resolved"
    service = _summary(data.get("service"), "event.data.service")
    priority = _summary(data.get("priority"), "event.data.priority")
    urgency = text(data.get("urgency"), "event.data.urgency", limit=32)
    labels = {
        k: v
        for k, v in {
            "service": service,
            "urgency": urgency,
            "priority": priority,
            "incident_number": text(data.get("number"), "event.data.number", limit=32),
            "escalation_policy": _summary(data.get("escalation_policy"), "event.data.escalation_policy"),
        }.items()
        if v
    }
    severity = map_severity(priority, _URGENCY.get(urgency or "", "warning"))
    alert = make_alert(
        where="event.data",
        fingerprint=f"pagerduty:{incident_id}",
        status="resolved" if resolved else "firing",
        severity=severity,
        title=data.get("title") or data.get("summary") or f"PagerDuty incident {incident_id}",
        description=data.get("description") or data.get("summary"),
        labels=labels,
        annotations={"event_type": event_type},
        source="pagerduty",
        starts_at=timestamp(data.get("created_at") or event.get("occurred_at"), "event.occurred_at"),
        ends_at=timestamp(event.get("occurred_at"), "event.occurred_at") if resolved else None,
        generator_url=data.get("html_url"),
    )
    return Parsed(alerts=[alert], group_key=f"pagerduty:{incident_id}", title=alert["title"])


def verified_body(payload: dict[str, Any], secret: str) -> dict[str, Any]:
    """The JSON body PagerDuty signed; IngestError when it is missing or the signature is wrong."""
    http = payload.get(HTTP_KEY)
    if not isinstance(http, dict) or "raw_body" not in http:
        raise IngestError(
            "pagerduty: signing_secret is set but the run has no raw webhook request (its `http` "
            "parameter, with `raw_body` and `headers`, set by the receiver) to verify the signature against"
        )
    raw = http["raw_body"]
    if isinstance(raw, str):
        raw = text(raw, f"{HTTP_KEY}.raw_body", limit=10 * 1024 * 1024).encode("utf-8")
    elif not isinstance(raw, bytes):
        raise IngestError(f"{HTTP_KEY}.raw_body: expected a string, got {type(raw).__name__}")
    headers = as_object(http.get("headers"), f"{HTTP_KEY}.headers", required=False)
    header = next((v for k, v in headers.items() if str(k).lower() == "x-pagerduty-signature"), None)
    if header is None:
        raise IngestError("pagerduty: the X-PagerDuty-Signature header is missing")
    header = text(header, "X-PagerDuty-Signature header", limit=4096) or ""
    expected = hmac.new(secret.encode("utf-8"), raw, hashlib.sha256).hexdigest()
    offered = [p.strip()[3:] for p in header.split(",") if p.strip().startswith("v1=")]
    if not any(hmac.compare_digest(expected, sig) for sig in offered if sig.isascii()):
        raise IngestError("pagerduty: X-PagerDuty-Signature does not match the body")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise IngestError(f"pagerduty: the signed body is not JSON ({exc.__class__.__name__})") from exc
    return as_object(body, "pagerduty signed body")


def _summary(value: Any, where: str) -> str | None:
    """PagerDuty references are objects with a `summary`; some arrive as null."""
    if isinstance(value, dict):
        return text(value.get("summary"), f"{where}.summary", limit=1024)
    return text(value, where, limit=1024)
