"""Tables and upsert statements of the incident store (imported only when it is used)."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite

metadata = MetaData()

_ID = BigInteger().with_variant(Integer, "sqlite")  # SQLite autoincrements INTEGER only
_JSON = JSON().with_variant(JSONB(), "postgresql")
_TIME = DateTime(timezone=True)

incidents_table = Table(
    "opsflow_incidents",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("key_hash", String(64), nullable=False),
    # the key's hash while open, NULL once resolved: at most one open incident per group
    Column("open_key", String(64), nullable=True),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("source", String(64), nullable=False),
    Column("notification_state", _JSON, nullable=False),
    Column("created_at", _TIME, nullable=False),
    Column("updated_at", _TIME, nullable=False),
    Column("resolved_at", _TIME, nullable=True),
    # alerts the sender left out of its latest delivery (Alertmanager's truncatedAlerts)
    Column("truncated_alerts", Integer, nullable=True),
    UniqueConstraint("open_key", name="uq_opsflow_incidents_open_key"),
    Index("ix_opsflow_incidents_key_hash", "key_hash"),
    Index("ix_opsflow_incidents_status_updated", "status", "updated_at"),
)

# one row per group ever seen: ingest locks it first, so the writers of one group (whether
# an incident exists yet or not) take turns, and a resolved-only delivery that creates the
# group's first incident cannot race another doing the same
groups_table = Table(
    "opsflow_incident_groups",
    metadata,
    Column("key_hash", String(64), primary_key=True),
)

alerts_table = Table(
    "opsflow_alerts",
    metadata,
    Column("id", _ID, primary_key=True, autoincrement=True),
    Column(
        "incident_id",
        _ID,
        ForeignKey("opsflow_incidents.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("fingerprint", String(256), nullable=False),
    Column("status", String(16), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("title", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("labels", _JSON, nullable=False),
    Column("annotations", _JSON, nullable=False),
    Column("source", String(64), nullable=False),
    Column("starts_at", String(64), nullable=True),
    Column("ends_at", String(64), nullable=True),
    Column("generator_url", Text, nullable=True),
    Column("receive_count", Integer, nullable=False),
    Column("first_seen_at", _TIME, nullable=False),
    Column("last_seen_at", _TIME, nullable=False),
    Column("resolved_at", _TIME, nullable=True),
    UniqueConstraint("incident_id", "fingerprint", name="uq_opsflow_alerts_incident_fingerprint"),
)

# what a run's nodes already did (a channel reached), so no retry does it again: see run_memory.py
run_memory_table = Table(
    "opsflow_run_memory",
    metadata,
    Column("trace_id", String(128), primary_key=True),
    Column("node_id", String(128), primary_key=True),
    Column("entry", String(256), primary_key=True),
    Column("record", _JSON, nullable=False),
    Column("created_at", _TIME, nullable=False),
    Index("ix_opsflow_run_memory_created", "created_at"),
)


_UPDATED_ON_CONFLICT = (
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
    "last_seen_at",
)


@cache
def alert_upsert(dialect: str):
    """INSERT ... ON CONFLICT (incident_id, fingerprint) DO UPDATE for one dialect.

    A known alert gets the delivery's fields, one more receive, and keeps the time it
    first resolved. On PostgreSQL the rows arrive as one JSON array (`:rows`) unpacked
    by `jsonb_to_recordset`; elsewhere they are executed as many.
    """
    from sqlalchemy import bindparam, case, column, func, select

    stmt: postgresql.Insert | sqlite.Insert
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        names = [c.name for c in alerts_table.columns if c.name != "id"]
        typed = [column(name, alerts_table.c[name].type) for name in names]
        rows = (
            func.jsonb_to_recordset(bindparam("rows", type_=JSONB()))
            .table_valued(*typed)
            .render_derived(name="r", with_types=True)
        )
        stmt = postgresql_insert(alerts_table).from_select(names, select(*[rows.c[n] for n in names]))
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(alerts_table)
    else:
        raise ValueError(f"no upsert for {dialect}")
    new = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=["incident_id", "fingerprint"],
        set_={
            **{name: new[name] for name in _UPDATED_ON_CONFLICT},
            "receive_count": alerts_table.c.receive_count + 1,
            "resolved_at": case(
                (new.status == "resolved", func.coalesce(alerts_table.c.resolved_at, new.resolved_at)),
                else_=None,
            ),
        },
    )
