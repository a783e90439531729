"""`ingest` node: parse an alert webhook, dedupe its alerts, and open/update/resolve the incident."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from nodes import unknown_name
from nodes.base import NodeContext
from nodes.errors import IngestError
from nodes.ingest import FORMATS, HTTP_KEY, detect_format, get_format
from nodes.ingest.alert import Parsed, common_labels, dedupe, worst_severity

_ZERO = {"received": 0, "new": 0, "updated": 0, "resolved": 0}


class Config(BaseModel):
    """Which format to expect, where the incident store is, and how to group alerts."""

    model_config = ConfigDict(extra="forbid")

    driver: str = Field(
        default="auto",
        description=(
            f"Alert format: `auto` (detect from the payload) or one of {', '.join(sorted(FORMATS))}."
        ),
        json_schema_extra={"enum": ["auto", *sorted(FORMATS)]},
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="Incident store URL; overrides $OPSFLOW_DATABASE_URL (default SQLite file).",
    )
    group_by: list[str] = Field(
        default_factory=list,
        description=(
            "Label names whose values group alerts into one incident, instead of the "
            "sender's own grouping (Alertmanager/Grafana `groupKey`)."
        ),
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="Webhook signing secret (PagerDuty v3); payloads that fail it are refused.",
    )
    store: bool = Field(
        default=True,
        description="Record alerts and incidents; false only parses and normalises.",
    )

    @field_validator("driver")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value != "auto" and value not in FORMATS:
            raise ValueError(unknown_name("ingest driver", value, {"auto": 1, **FORMATS}))
        return value


def _detected(payload: dict[str, Any], told: str | None) -> str:
    """The payload's format: the one the receiver detected, when the payload has its shape (a run
    whose payload was edited since may not), else detected here."""
    if told in FORMATS and get_format(told).detect(payload):
        return told
    return detect_format(payload)


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    payload = ctx.payload
    if not isinstance(payload, dict):
        raise IngestError(f"payload: expected a JSON object, got {type(payload).__name__}")
    name = config.driver if config.driver != "auto" else _detected(payload, ctx.alert_format)
    parsed = parse(name, _with_request(payload, ctx.http), config, ctx)
    if parsed.ignored:
        ctx.log.info("ingest: %s payload ignored: %s", name, parsed.ignored)
        return {
            "ignored": True,
            "reason": parsed.ignored,
            "format": name,
            "incident_id": None,
            "incident": None,
            "counts": dict(_ZERO),
            "created": False,
            "duplicate": False,
            "status": "ignored",
            "severity": None,
            **seed_keys(dict(_ZERO), created=False, duplicate=False, alerts=[]),
            **parsed.extra,
        }
    alerts = dedupe(parsed.alerts)
    key = group_key(parsed, alerts, config.group_by)
    if config.store:
        from nodes.incidents import store

        url = store.database_url(config.database_url.get_secret_value() if config.database_url else None)
        _track_secret_url(url, ctx)
        truncated = parsed.extra.get("truncated_alerts", 0)
        result = store.ingest(
            alerts,
            key=key,
            title=parsed.title,
            source=name,
            database_url=url,
            truncated_alerts=truncated,
            once=(ctx.run.trace_id, ctx.node_id, _digest(payload, key)),
        )
    else:
        result = _unstored(alerts, key, parsed.title, name, parsed.extra.get("truncated_alerts", 0))
    incident = result["incident"]
    ctx.log.info("ingest: %s incident %s %s (%s)", name, incident["id"], incident["status"], result["counts"])
    return {
        "ignored": False,
        "format": name,
        "incident_id": incident["id"],
        "incident": incident,
        "counts": result["counts"],
        "created": result["created"],
        "duplicate": result["duplicate"],
        "status": incident["status"],
        "severity": incident["severity"],
        **seed_keys(
            result["counts"], created=result["created"], duplicate=result["duplicate"], alerts=alerts
        ),
        **parsed.extra,
    }


def seed_keys(
    counts: dict[str, int], *, created: bool, duplicate: bool, alerts: list[dict]
) -> dict[str, Any]:
    """The seeds' flat counters, which the seeds' templates and result text read."""
    stored = bool(counts.get("received"))
    return {
        "alerts_created": counts.get("new", 0),
        "alerts_updated": counts.get("updated", 0),
        "alerts_resolved": counts.get("resolved", 0),
        "incidents_created": 1 if created else 0,
        "incidents_updated": 1 if stored and not created and not duplicate else 0,
        "alert_fingerprint": alerts[0].get("fingerprint") if alerts else None,
    }


def _with_request(payload: dict[str, Any], http: dict[str, Any] | None) -> dict[str, Any]:
    """What a format parses: the payload, and the raw request (the run's `http`) under HTTP_KEY.

    Runs and journal entries made before `http` was a parameter of its own carry the raw
    request inside the payload, under HTTP_KEY: they still verify. (The receiver removes
    HTTP_KEY from every payload it is sent, so no sender can supply one.)
    """
    if http is None:
        return payload
    return {**{k: v for k, v in payload.items() if k != HTTP_KEY}, HTTP_KEY: http}


def parse(name: str, payload: dict[str, Any], config: Config, ctx: NodeContext) -> Parsed:
    """Parse with format `name`, giving it the node settings its own Config declares."""
    fmt = get_format(name)
    settings: dict[str, Any] = {}
    if config.signing_secret is not None:
        ctx.secrets.add(config.signing_secret.get_secret_value())
        if "signing_secret" not in fmt.Config.model_fields:
            able = [n for n in FORMATS if "signing_secret" in get_format(n).Config.model_fields]
            raise IngestError(
                f"signing_secret is set but the payload is {name}, which cannot be verified "
                f"(signed formats: {', '.join(able)})"
            )
        settings["signing_secret"] = config.signing_secret
    try:
        return fmt.parse(payload, fmt.Config(**settings))
    except RecursionError:
        raise IngestError(f"{name} payload: nested too deeply") from None


def group_key(parsed: Parsed, alerts: list[dict[str, Any]], group_by: list[str]) -> str:
    """The sender's group, or the values of the `group_by` labels (several values joined)."""
    if not group_by:
        return parsed.group_key
    values = {label: "|".join(sorted({a["labels"].get(label, "") for a in alerts})) for label in group_by}
    return "group_by:" + json.dumps(values, sort_keys=True, ensure_ascii=False)


def _unstored(
    alerts: list[dict[str, Any]], key: str, title: str, name: str, truncated: int
) -> dict[str, Any]:
    """The incident as it would look, for `store: false`: nothing recorded, nothing counted."""
    firing = sum(1 for a in alerts if a["status"] == "firing")
    incident = {
        "id": None,
        "key": key,
        "status": "open" if firing else "resolved",
        "severity": worst_severity(a["severity"] for a in alerts),
        "title": title,
        "source": name,
        "alert_count": len(alerts),
        "firing_count": firing,
        "alerts": [{**a, "receive_count": 1} for a in alerts],
        "labels": common_labels(alerts),
        "notification_state": {},
        "created_at": None,
        "updated_at": None,
        "resolved_at": None,
        "truncated_alerts": truncated,
    }
    return {"incident": incident, "counts": dict(_ZERO), "created": False, "duplicate": False}


def _digest(payload: dict[str, Any], key: str) -> str:
    """The delivery's identity: the same run seeing it again is a retry, not a repeat."""
    import hashlib

    canonical = json.dumps([key, payload], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _track_secret_url(url: str, ctx: NodeContext) -> None:
    """A database URL may hold a password: keep both out of logs and results."""
    if "@" not in url:
        return
    ctx.secrets.add(url)
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # an unparsable URL fails later, in the store, with a clean message
        return
    if password:
        ctx.secrets.add(str(password))
