"""What the receiver reads from an alert payload: its idempotency key, and one Prefect event per alert."""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from flows.request import FLOW_NAME
from nodes.errors import OpsflowError
from nodes.ingest import detect_format, get_format

__all__ = [
    "MAX_EVENTS",
    "Summary",
    "alert_name",
    "canonical_hash",
    "count_repeat",
    "emit_alert_events",
    "idempotency_key",
    "summarize",
]

# one delivery may carry thousands of alerts; past this many, only the count is logged
MAX_EVENTS = 500
MAX_NAME = 120  # an event card's resource line, not a paragraph

log = logging.getLogger("opsflow.receiver")


@dataclass
class Summary:
    """The alerts of one payload as the ingest formats read them; `format` is None if none could."""

    format: str | None = None
    group_key: str = ""
    alerts: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


def canonical_hash(value: Any) -> str:
    """sha256 of the canonical JSON: the same document hashes the same, whatever its key order."""
    blob = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def summarize(payload: dict[str, Any]) -> Summary:
    """Parse `payload` with the ingest formats (auto-detected), without any side effect.

    A payload no format understands is still accepted: the ingest node reports why in
    the flow run, where someone will look for it.
    """
    try:
        name = detect_format(payload)
        parsed = get_format(name).parse(payload)
    except OpsflowError as exc:
        return Summary(problem=str(exc))
    except Exception as exc:  # a format's bug must not cost the alert: the flow run's ingest node shows it
        log.exception("cannot summarize the payload; it is accepted without its alerts")
        return Summary(problem=f"the payload could not be read ({type(exc).__name__})")
    return Summary(format=name, group_key=parsed.group_key, alerts=parsed.alerts)


def idempotency_key(
    definition: str,
    payload: dict[str, Any],
    summary: Summary,
    options: dict[str, Any] | None = None,
    episodes: dict[str, str] | None = None,
) -> str:
    """The key under which Prefect creates at most one flow run for this delivery.

    A re-delivered webhook (a sender's retry, or a repeat notification of the same
    episode) carries the same group, fingerprints, statuses and start times, so it
    maps to the run already created. `starts_at` is part of the key so an alert that
    fires again after it resolved is a new episode and gets a new run. Prefect scopes
    keys by flow, and every definition shares the one flow: the name is in the key.
    `options` (source, environment, incident) are run parameters that make a run different.
    `episodes` (fingerprint → episode token, from _receiver_episodes) tells episodes apart for
    formats whose alerts carry no start of their own.
    """
    if summary.alerts:
        alerts = sorted((a["fingerprint"], a["status"], a.get("starts_at") or "") for a in summary.alerts)
        material: dict[str, Any] = {"group": summary.group_key, "alerts": alerts}
        if episodes:
            material["episodes"] = sorted(episodes.items())
    else:
        material = {"body": payload}
    if options:
        material["options"] = options
    return f"opsflow-receiver:{definition}:{canonical_hash(material)}"


async def count_repeat(summary: Summary) -> None:
    """A repeated delivery starts no run, so the incident store hears of it here: its alerts'
    `receive_count` and `last_seen_at` move (in $OPSFLOW_DATABASE_URL's store, under the
    sender's group: a definition whose ingest node names another store or `group_by` is not
    counted). A store that cannot be written costs a log line, never the answer."""
    import asyncio

    from nodes.incidents.store import record_repeat

    if not summary.alerts:
        return
    try:
        await asyncio.to_thread(record_repeat, summary.alerts, key=summary.group_key)
    except OpsflowError as exc:
        log.warning("repeated delivery not counted on its incident: %s", exc)


def emit_alert_events(summary: Summary, definition: str, run) -> int:
    """`opsflow.alert.firing|resolved` per alert, related to its flow run, the run's deployment
    and flow, and named by the alertname; returns how many.

    Events go to the process's Prefect API (PREFECT_API_URL) through Prefect's
    background events worker: emitting never blocks nor fails the request. They are
    emitted outside any run context: Prefect relates an event to the run current where it
    is emitted, and inside `pipeline serve --receiver` that was a served run, not the alert's.
    """
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.events import emit_event

    related = [
        {
            "prefect.resource.id": f"prefect.flow-run.{run.id}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(run.name),
        }
    ]
    if run.deployment_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.deployment.{run.deployment_id}",
                "prefect.resource.role": "deployment",
                "prefect.resource.name": definition,
            }
        )
    if run.flow_id:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow.{run.flow_id}",
                "prefect.resource.role": "flow",
                "prefect.resource.name": FLOW_NAME,
            }
        )
    alerts = summary.alerts[:MAX_EVENTS]
    if len(summary.alerts) > MAX_EVENTS:
        log.warning(
            "run %s: %d alerts; events emitted for the first %d only",
            run.id,
            len(summary.alerts),
            MAX_EVENTS,
        )

    def emit_all() -> None:
        # in this copy of the context only; prefect types its private context vars without None
        FlowRunContext.__var__.set(None)  # type: ignore[arg-type]
        TaskRunContext.__var__.set(None)  # type: ignore[arg-type]
        for alert in alerts:
            _emit(emit_event, alert, related, definition, summary.format)

    contextvars.copy_context().run(emit_all)
    return len(alerts)


def alert_name(alert: dict[str, Any]) -> str:
    """What an event card calls the alert: its alertname, else its title, on one short line
    (the fingerprint, the resource id's tail, only when it has neither)."""
    labels = alert.get("labels") or {}
    for candidate in (labels.get("alertname"), alert.get("title")):
        if isinstance(candidate, str):
            name = " ".join(candidate.split())
            if name and name != "(untitled)":
                return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"
    return str(alert["fingerprint"])


def _emit(emit_event, alert: dict[str, Any], related: list[dict[str, str]], definition: str, fmt) -> None:
    status = "resolved" if alert["status"] == "resolved" else "firing"
    emit_event(
        event=f"opsflow.alert.{status}",
        resource={
            # the id stays the fingerprint (what automations and filters match); the name is
            # what Prefect's event cards show for it
            "prefect.resource.id": f"opsflow.alert.{alert['fingerprint']}",
            "prefect.resource.name": alert_name(alert),
            "alertname": str(alert["labels"].get("alertname") or alert["title"]),
            "opsflow.alert.status": status,
            "opsflow.alert.severity": str(alert["severity"]),
            "opsflow.definition": definition,
        },
        related=related,
        payload={
            "definition": definition,
            "format": fmt,
            "fingerprint": alert["fingerprint"],
            "status": alert["status"],
            "severity": alert["severity"],
            "labels": alert["labels"],
            "starts_at": alert.get("starts_at"),
        },
    )
