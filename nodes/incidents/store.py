"""Incident store: alerts keyed by fingerprint, grouped into incidents, in SQLite or PostgreSQL.

One open incident per group key (a unique `open_key`, cleared on resolution), alerts
unique per (incident, fingerprint) and written with `INSERT ... ON CONFLICT`. Writers
of one group are serialised by a row lock on the group's row in `opsflow_incident_groups`
(an upsert, taken before anything is read: on PostgreSQL the row exists and is locked
even when the group has no incident yet) or by the database write lock (SQLite
`BEGIN IMMEDIATE`), so parallel workers ingesting the same group never create its
incident twice, duplicate an alert, or lose a receive. A lock on the incident row alone
is not enough: a resolved-only delivery creates the group's first incident already
resolved, with no `open_key` for a concurrent one to conflict on.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from nodes.errors import IngestError
from nodes.incidents import run_memory
from nodes.incidents.db import database_url, dispose_engines, errors, get_engine
from nodes.ingest.alert import common_labels, dedupe, worst_severity
from nodes.scrub import scrub_alert, scrub_payload

__all__ = ["database_url", "dispose_engines", "get_engine", "get_incident", "ingest", "list_incidents"]
__all__ += ["record_repeat", "save_notification_state"]

STATUSES = ("open", "resolved")


def _insert(conn, table):
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


def ingest(
    alerts: list[dict[str, Any]],
    *,
    key: str,
    title: str,
    source: str,
    database_url: str | None = None,
    truncated_alerts: int = 0,
    once: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """Record one delivery of a group's alerts; return the incident and what changed.

    `once` is (trace id, node id, payload digest): the outcome is kept with the write, in
    the same transaction, and an attempt of the same run that comes again (a retry after
    a timeout, or of the whole flow run) gets that outcome back instead of ingesting the
    same alerts a second time, which would read as a duplicate and silence the page.

    `truncated_alerts` is how many alerts the sender left out of this delivery (kept on
    the incident, the latest delivery's count).

    Returns `{"incident", "created", "counts": {received, new, updated, resolved},
    "duplicate"}`; `duplicate` means the incident existed and nothing in it changed
    status (a repeat delivery). A delivery of only resolved alerts for a group with no
    open incident lands in the group's latest incident rather than opening one.
    """
    from sqlalchemy import select, update

    from nodes.incidents.tables import alerts_table, incidents_table

    engine = get_engine(database_url)
    alerts = [scrub_alert(a) for a in dedupe(alerts)]  # kept without secret shapes, however they came
    key, title = scrub_payload([key, title])[0]
    if not alerts:
        raise IngestError("nothing to ingest: the payload holds no alerts")
    key_hash = hashlib.sha256(key.encode("utf-8")).hexdigest()
    now = datetime.now(UTC)
    all_resolved = all(a["status"] == "resolved" for a in alerts)
    A, Inc = alerts_table, incidents_table
    with errors(engine, "ingesting alerts"), engine.begin() as conn:
        _lock_group(conn, key_hash)
        if once is not None and (earlier := run_memory.outcome_in(conn, once)) is not None:
            return {**earlier, "replayed": True}
        incident, created = _claim_incident(conn, key, key_hash, title, source, all_resolved, now)
        stored = {
            row[0]: _alert_dict(row)
            for row in conn.execute(
                select(*_alert_columns()).where(A.c.incident_id == incident.id).order_by(A.c.id)
            )
        }
        _upsert_alerts(conn, incident.id, alerts, now)
        # the rows as they now are, without reading them back: what we just wrote, on top
        merged = dict(stored)
        for a in alerts:
            old = stored.get(a["fingerprint"])
            merged[a["fingerprint"]] = {**a, "receive_count": old["receive_count"] + 1 if old else 1}
        rows = list(merged.values())
        firing = sum(1 for r in rows if r["status"] == "firing")
        status = "open" if firing else "resolved"
        severity = worst_severity(r["severity"] for r in rows)
        resolved_at = None
        if status == "resolved":
            resolved_at = incident.resolved_at if incident.status == "resolved" else now
        conn.execute(
            update(Inc)
            .where(Inc.c.id == incident.id)
            .values(
                status=status,
                severity=severity,
                open_key=key_hash if status == "open" else None,
                updated_at=now,
                resolved_at=resolved_at,
                truncated_alerts=truncated_alerts or None,
            )
        )
        before = {fp: a["status"] for fp, a in stored.items()}
        new = [a for a in alerts if a["fingerprint"] not in before]
        changed = [a for a in alerts if before.get(a["fingerprint"], a["status"]) != a["status"]]
        counts = {
            "received": len(alerts),
            "new": len(new),
            "updated": len(alerts) - len(new),
            "resolved": sum(1 for a in changed if a["status"] == "resolved"),
        }
        state = {
            **incident._asdict(),
            "status": status,
            "severity": severity,
            "updated_at": now,
            "resolved_at": resolved_at,
            "truncated_alerts": truncated_alerts or None,
        }
        duplicate = not created and not new and not changed and incident.status == status
        result = {
            "incident": _incident_dict(state, rows),
            "created": created,
            "counts": counts,
            "duplicate": duplicate,
        }
        if once is not None:
            run_memory.keep_outcome(conn, once, result, now)
        return result


def record_repeat(alerts: list[dict[str, Any]], *, key: str, database_url: str | None = None) -> int | None:
    """Count a repeated delivery (one that starts no run) on the group's incident: each of its
    alerts stored with the same status gets one more receive and a new `last_seen_at`.

    The incident is the group's open one, else its latest; returns its id, or None when the
    store has no incident for the group yet (the first delivery's run has not ingested it).
    """
    from sqlalchemy import select, update

    from nodes.incidents.tables import alerts_table as A
    from nodes.incidents.tables import incidents_table as Inc

    engine = get_engine(database_url)
    key_hash = hashlib.sha256(scrub_payload(key)[0].encode("utf-8")).hexdigest()  # as ingest() keeps it
    now = datetime.now(UTC)
    with errors(engine, "recording a repeated delivery"), engine.begin() as conn:
        _lock_group(conn, key_hash)
        incident = conn.execute(select(Inc.c.id).where(Inc.c.open_key == key_hash)).first()
        if incident is None:
            latest = select(Inc.c.id).where(Inc.c.key_hash == key_hash).order_by(Inc.c.id.desc()).limit(1)
            incident = conn.execute(latest).first()
        if incident is None:
            return None
        for status in ("firing", "resolved"):
            fingerprints = [a["fingerprint"] for a in alerts if a["status"] == status]
            if fingerprints:
                where = (
                    A.c.incident_id == incident.id,
                    A.c.fingerprint.in_(fingerprints),
                    A.c.status == status,
                )
                conn.execute(
                    update(A).where(*where).values(receive_count=A.c.receive_count + 1, last_seen_at=now)
                )
    return incident.id


def _lock_group(conn, key_hash: str) -> None:
    """Hold the group's row lock until the transaction ends (inserting the row if it is new)."""
    from nodes.incidents.tables import groups_table

    stmt = _insert(conn, groups_table).values(key_hash=key_hash)
    conn.execute(stmt.on_conflict_do_update(index_elements=["key_hash"], set_={"key_hash": key_hash}))


def _claim_incident(conn, key, key_hash, title, source, all_resolved, now):
    """The group's open incident, locked; else (all resolved) its latest; else a new one."""
    from sqlalchemy import select

    from nodes.incidents.tables import incidents_table as Inc

    for _ in range(20):
        row = conn.execute(select(Inc).where(Inc.c.open_key == key_hash).with_for_update()).first()
        if row is not None:
            return row, False
        if all_resolved:
            latest = select(Inc).where(Inc.c.key_hash == key_hash).order_by(Inc.c.id.desc()).limit(1)
            row = conn.execute(latest.with_for_update()).first()
            if row is not None:
                return row, False
        values = {
            "key": key,
            "key_hash": key_hash,
            "open_key": key_hash,
            "status": "open",
            "severity": "info",
            "title": title,
            "source": source,
            "notification_state": {},
            "created_at": now,
            "updated_at": now,
        }
        stmt = _insert(conn, Inc).values(**values).on_conflict_do_nothing(index_elements=["open_key"])
        row = conn.execute(stmt.returning(*Inc.columns)).first()
        if row is not None:
            return row, True
        # another worker opened it between our select and insert: lock theirs
    raise IngestError(f"could not open or lock the incident for group {key!r}", retryable=True)


def _upsert_alerts(conn, incident_id: int, alerts: list[dict[str, Any]], now: datetime) -> None:
    from nodes.incidents.tables import alert_upsert

    rows = [
        {
            "incident_id": incident_id,
            **{name: a[name] for name in _ALERT_FIELDS[:-1]},
            "receive_count": 1,
            "first_seen_at": now,
            "last_seen_at": now,
            "resolved_at": now if a["status"] == "resolved" else None,
        }
        for a in alerts
    ]
    if conn.dialect.name == "postgresql":
        # one statement for the whole batch: a pipelined executemany costs a round trip per row
        stamp = now.isoformat()
        for row in rows:
            row["first_seen_at"] = row["last_seen_at"] = stamp
            row["resolved_at"] = stamp if row["resolved_at"] else None
        conn.execute(alert_upsert("postgresql"), {"rows": rows})
    else:
        conn.execute(alert_upsert(conn.dialect.name), rows)


def get_incident(incident_id: int, *, database_url: str | None = None) -> dict[str, Any] | None:
    """One incident with its alerts (the ingest node's `incident`), or None."""
    from sqlalchemy import select

    from nodes.incidents.tables import alerts_table as A
    from nodes.incidents.tables import incidents_table as Inc

    engine = get_engine(database_url)
    with errors(engine, "reading an incident"), engine.connect() as conn:
        row = conn.execute(select(Inc).where(Inc.c.id == incident_id)).first()
        if row is None:
            return None
        query = select(*_alert_columns()).where(A.c.incident_id == row.id).order_by(A.c.id)
        alerts = [_alert_dict(r) for r in conn.execute(query)]
    return _incident_dict(row._asdict(), alerts)


def list_incidents(
    status: str | None = None, limit: int = 20, *, database_url: str | None = None
) -> list[dict[str, Any]]:
    """The newest incidents first, without their alerts (for `pipeline incidents`)."""
    from sqlalchemy import func, select

    from nodes.incidents.tables import alerts_table as A
    from nodes.incidents.tables import incidents_table as Inc

    if status is not None and status not in STATUSES:
        raise IngestError(f"status: {status!r} is not one of {', '.join(STATUSES)}")
    alert_count = select(func.count()).where(A.c.incident_id == Inc.c.id).scalar_subquery()
    firing_count = (
        select(func.count()).where(A.c.incident_id == Inc.c.id, A.c.status == "firing").scalar_subquery()
    )
    query = select(Inc, alert_count.label("alert_count"), firing_count.label("firing_count"))
    if status is not None:
        query = query.where(Inc.c.status == status)
    query = query.order_by(Inc.c.updated_at.desc(), Inc.c.id.desc()).limit(max(1, int(limit)))
    engine = get_engine(database_url)
    with errors(engine, "listing incidents"), engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        {
            "id": r.id,
            "key": r.key,
            "status": r.status,
            "severity": r.severity,
            "title": r.title,
            "source": r.source,
            "alert_count": r.alert_count,
            "firing_count": r.firing_count,
            "created_at": _iso(r.created_at),
            "updated_at": _iso(r.updated_at),
            "resolved_at": _iso(r.resolved_at),
        }
        for r in rows
    ]


def save_notification_state(
    incident_id: int, state: dict[str, Any], *, database_url: str | None = None
) -> dict[str, Any]:
    """Merge `state` into the incident's notification state (e.g. a Slack thread `ts`)
    so later runs can update the same message; returns the merged state."""
    from sqlalchemy import select, update

    from nodes.incidents.tables import incidents_table as Inc

    if not isinstance(state, dict):
        raise IngestError(f"notification state: expected an object, got {type(state).__name__}")
    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise IngestError(f"notification state is not JSON: {exc}") from None
    engine = get_engine(database_url)
    with errors(engine, "saving notification state"), engine.begin() as conn:
        query = select(Inc.c.notification_state).where(Inc.c.id == incident_id).with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise IngestError(f"incident {incident_id} not found")
        merged = _merge(row.notification_state or {}, state)
        conn.execute(update(Inc).where(Inc.c.id == incident_id).values(notification_state=merged))
    return merged


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:  # SQLite keeps no zone; we only ever write UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_ALERT_FIELDS = (
    "fingerprint",
    "status",
    "severity",
    "title",
    "description",
    "labels",
    "annotations",
    "source",
    "starts_at",
    "ends_at",
    "generator_url",
    "receive_count",
)


def _alert_columns():
    from nodes.incidents.tables import alerts_table

    return [alerts_table.c[name] for name in _ALERT_FIELDS]


def _alert_dict(row) -> dict[str, Any]:
    """A stored alert as the node outputs it: the normalised alert plus `receive_count`."""
    return dict(zip(_ALERT_FIELDS, row, strict=True))


def _incident_dict(incident: dict[str, Any], alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": incident["id"],
        "key": incident["key"],
        "status": incident["status"],
        "severity": incident["severity"],
        "title": incident["title"],
        "source": incident["source"],
        "alert_count": len(alerts),
        "firing_count": sum(1 for a in alerts if a["status"] == "firing"),
        "alerts": alerts,
        "labels": common_labels(alerts),
        "notification_state": incident["notification_state"] or {},
        "created_at": _iso(incident["created_at"]),
        "updated_at": _iso(incident["updated_at"]),
        "resolved_at": _iso(incident["resolved_at"]),
        "truncated_alerts": incident.get("truncated_alerts") or 0,
    }
