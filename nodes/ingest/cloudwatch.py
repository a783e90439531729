"""`cloudwatch` format: CloudWatch alarms delivered through an SNS HTTP(S) subscription."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from nodes.errors import IngestError
from nodes.ingest.alert import Parsed, as_object, hash_key, make_alert, string_map, text, timestamp

SHAPE = "an SNS message (`Type` + `TopicArn`) whose `Message` is a CloudWatch alarm JSON string"

_SNS_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation")
_STATES = {"ALARM": "firing", "OK": "resolved"}


class Config(BaseModel):
    """CloudWatch needs no settings: the alarm state says firing or resolved."""

    model_config = ConfigDict(extra="forbid")


def detect(payload: dict[str, Any]) -> bool:
    return payload.get("Type") in _SNS_TYPES and "TopicArn" in payload


def parse(payload: dict[str, Any], config: Config | None = None) -> Parsed:
    """ALARM fires and OK resolves the alarm's one alert, keyed on its ARN.

    SNS handshakes are no alerts: they are ignored, and the subscription URL is passed
    on so whoever owns the endpoint can confirm it.
    """
    kind = text(payload.get("Type"), "Type", limit=64, required=True)
    if kind != "Notification":
        url = text(payload.get("SubscribeURL"), "SubscribeURL", limit=4096)
        extra = {"subscribe_url": url} if url else {}
        return Parsed(ignored=f"SNS {kind}: no alarm in it", extra=extra)
    message = text(payload.get("Message"), "Message", limit=256 * 1024, required=True)
    try:
        alarm = json.loads(message)
    except (ValueError, RecursionError):
        raise IngestError("Message: is not a CloudWatch alarm (not a JSON string)") from None
    alarm = as_object(alarm, "Message")
    name = text(alarm.get("AlarmName"), "Message.AlarmName", limit=1024, required=True)
    state = text(alarm.get("NewStateValue"), "Message.NewStateValue", limit=64, required=True)
    if state not in _STATES:
        return Parsed(ignored=f"CloudWatch alarm {name!r} moved to {state}, neither ALARM nor OK")
    account = text(alarm.get("AWSAccountId"), "Message.AWSAccountId", limit=64) or ""
    region = text(alarm.get("Region"), "Message.Region", limit=128) or ""
    arn = text(alarm.get("AlarmArn"), "Message.AlarmArn", limit=2048)
    fingerprint = hash_key("cloudwatch", arn or [account, region, name])
    trigger = as_object(alarm.get("Trigger"), "Message.Trigger", required=False)
    labels = {
        "alertname": name,
        "account": account,
        "region": region,
        "metric": text(trigger.get("MetricName"), "Message.Trigger.MetricName", limit=1024) or "",
        "namespace": text(trigger.get("Namespace"), "Message.Trigger.Namespace", limit=1024) or "",
        **_dimensions(trigger.get("Dimensions")),
    }
    changed = timestamp(alarm.get("StateChangeTime"), "Message.StateChangeTime")
    alert = make_alert(
        where="Message",
        fingerprint=fingerprint,
        status=_STATES[state],
        severity="critical",
        title=name,
        description=alarm.get("NewStateReason") or alarm.get("AlarmDescription"),
        labels={k: v for k, v in labels.items() if v},
        annotations=string_map({"description": alarm.get("AlarmDescription"), "arn": arn}, "Message"),
        source="cloudwatch",
        starts_at=changed if state == "ALARM" else None,
        ends_at=changed if state == "OK" else None,
    )
    return Parsed(alerts=[alert], group_key=f"cloudwatch:{fingerprint}", title=name)


def _dimensions(value: Any) -> dict[str, str]:
    if not isinstance(value, list):
        return {}
    dims = {}
    for i, item in enumerate(value[:32]):
        if isinstance(item, dict):
            name = text(item.get("name"), f"Message.Trigger.Dimensions[{i}].name", limit=256)
            if name:
                key = f"dimension_{name}"
                dims[key] = text(item.get("value"), f"Message.Trigger.Dimensions[{i}]", limit=1024)
    return {k: v for k, v in dims.items() if v}
