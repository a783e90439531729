"""`pagerduty` driver: Events API v2 trigger, and resolve of the same incident via its dedup_key."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.errors import DeliveryError
from nodes.notify._http import Outbound, delivered, secret_or_env
from nodes.notify.message import Message, truncate

if TYPE_CHECKING:
    import httpx

HTTP = True


class Config(BaseModel):
    """PagerDuty Events v2 settings; the routing key defaults to PAGERDUTY_ROUTING_KEY."""

    model_config = ConfigDict(extra="forbid")

    routing_key: SecretStr | None = Field(
        default=None, description="Integration (routing) key; default: PAGERDUTY_ROUTING_KEY."
    )
    events_url: str = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        description="Events API v2 enqueue URL (overridable for tests or EU accounts).",
    )
    dedup_key: str | None = Field(
        default=None, description="Override the dedup key (default: the incident key, else a stable hash)."
    )
    source: str | None = Field(default=None, description="`payload.source`; default: the alerting host.")
    component: str | None = Field(default=None, description="`payload.component`, e.g. `mysql`.")
    group: str | None = Field(default=None, description="`payload.group`, e.g. `prod-datapipe`.")
    client: str = Field(default="opsflow", description="`client` name shown in PagerDuty.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")


def dedup_key(config: Config, message: Message) -> str:
    """One key per incident, the same for trigger and resolve, so PagerDuty closes what it opened."""
    if config.dedup_key:
        return config.dedup_key
    incident = message.incident or {}
    if incident.get("key"):
        return truncate(str(incident["key"]), 255)
    basis = f"{message.run.get('definition', '')}\n{message.headline}"
    return "opsflow-" + hashlib.sha256(basis.encode()).hexdigest()[:32]


def build_event(config: Config, message: Message, routing_key: str) -> dict[str, Any]:
    key = dedup_key(config, message)
    if message.resolved:
        return {"routing_key": routing_key, "dedup_key": key, "event_action": "resolve"}
    details: dict[str, Any] = {"text": truncate(message.text, 4000), **message.fields}
    if message.assessed_severity:  # shown, never routed: `severity` stays the alert's own
        details["assessed_severity"] = message.assessed_severity
    if message.probable_cause:
        details["probable_cause"] = message.probable_cause
    if message.recommendations:
        details["recommendations"] = message.recommendations[:10]
    payload: dict[str, Any] = {
        "summary": truncate(message.title, 1024),
        "source": config.source or _source(message),
        "severity": message.level,
    }
    if config.component:
        payload["component"] = config.component
    if config.group:
        payload["group"] = config.group
    payload["custom_details"] = details
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "dedup_key": key,
        "event_action": "trigger",
        "client": config.client,
        "payload": payload,
    }
    if message.links:
        event["links"] = [{"href": link["url"], "text": link["title"]} for link in message.links]
    return event


def _source(message: Message) -> str:
    for alert in (message.incident or {}).get("alerts") or []:
        labels = alert.get("labels") or {}
        for key in ("instance", "host", "hostname"):
            if labels.get(key):
                return str(labels[key])
    return message.run.get("definition") or "opsflow"


def outbound(config: Config, message: Message, *, strict: bool = True) -> Outbound:
    """The event, with the routing key (config, else PAGERDUTY_ROUTING_KEY; `strict=False`: *** if unset)."""
    key = secret_or_env(
        config.routing_key, "PAGERDUTY_ROUTING_KEY", "pagerduty", "routing_key", strict=strict
    )
    return Outbound("POST", config.events_url, body=build_event(config, message, key), secrets=(key,))


def preview(config: Config, message: Message) -> dict[str, Any]:
    """The request `send` would make, masked: the routing key reads ***."""
    return outbound(config, message, strict=False).preview("pagerduty")


def send(config: Config, message: Message, ctx: NodeContext, client: httpx.Client | None = None) -> dict:
    """Trigger (or resolve) the incident's PagerDuty alert; 202 means PagerDuty queued it."""
    out = outbound(config, message)
    response = out.send("pagerduty", ctx, config.timeout_seconds, client)
    try:
        data = response.json()
    except ValueError:
        data = {}
    if isinstance(data, dict) and data.get("status") not in (None, "success"):
        raise DeliveryError(f"pagerduty: event refused: {data.get('status')}: {data.get('message')}")
    event = out.body
    return delivered(
        "pagerduty",
        response,
        message_id=(data or {}).get("dedup_key") or event["dedup_key"],
        event_action=event["event_action"],
        dedup_key=event["dedup_key"],
    )
