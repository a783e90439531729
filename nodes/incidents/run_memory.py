"""What a run's nodes already did, kept in the incident store's database.

A notify node that reached a channel must not reach it again when it is retried: by its
own retries, by a flow run retried from the Prefect UI, or by another worker picking the
run up after a crash. A process's memory covers only the first, so each channel reached
is recorded here under the run's trace id and the node id, as soon as it is reached.

The database may be down while the channel is up: then the memory is this process's
only (logged), since failing a delivered notification would only make it send again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

from nodes.incidents.db import errors, get_engine

__all__ = [
    "claim",
    "forget",
    "forget_local",
    "keep_outcome",
    "outcome_in",
    "recall",
    "recall_local",
    "remember",
]

_LOCAL_LIMIT = 4096
_local: OrderedDict[tuple[str, str], dict[str, Any]] = OrderedDict()
_lock = threading.Lock()


def recall(trace_id: str, node_id: str, *, database_url: str | None = None, log=None) -> dict[str, Any]:
    """entry → record of everything this run's node already did (stored, then this process's own)."""
    found: dict[str, Any] = {}
    try:
        from sqlalchemy import select

        from nodes.incidents.tables import run_memory_table as Mem

        engine = get_engine(database_url)
        query = select(Mem.c.entry, Mem.c.record).where(Mem.c.trace_id == trace_id, Mem.c.node_id == node_id)
        with errors(engine, "reading what the run already did"), engine.connect() as conn:
            found = {row.entry: row.record for row in conn.execute(query)}
    except Exception as exc:
        if log is not None:
            log.warning(
                "could not read what this run already delivered (%s); using this process's memory", exc
            )
    return {**recall_local(trace_id, node_id), **found}


def recall_local(trace_id: str, node_id: str) -> dict[str, Any]:
    """What this process remembers of the run's node."""
    with _lock:
        return dict(_local.get((trace_id, node_id), {}))


def remember(
    trace_id: str,
    node_id: str,
    entry: str,
    record: dict[str, Any],
    *,
    durable: bool = True,
    database_url: str | None = None,
    log=None,
) -> None:
    """Record that `entry` was done (in the database too, when `durable`); the first record is kept."""
    with _lock:
        _local.setdefault((trace_id, node_id), {})[entry] = record
        _local.move_to_end((trace_id, node_id))
        while len(_local) > _LOCAL_LIMIT:
            _local.popitem(last=False)
    if not durable:
        return
    try:
        engine = get_engine(database_url)
        row = {
            "trace_id": trace_id,
            "node_id": node_id,
            "entry": entry,
            "record": record,
            "created_at": datetime.now(UTC),
        }
        with errors(engine, "recording a delivery"), engine.begin() as conn:
            conn.execute(_insert_once(conn.dialect.name), row)
    except Exception as exc:
        if log is not None:
            log.warning(
                "could not record the delivery to %s durably (%s); a retry elsewhere may repeat it",
                entry,
                exc,
            )


def claim(trace_id: str, node_id: str, entry: str, *, database_url: str | None = None) -> bool:
    """Record `entry` unless it is recorded already: True for the one caller that recorded it.

    Two processes that may both do a thing (a hook and `pipeline serve`, telling a crash)
    claim it first; only the winner does it. Database errors are raised (as IngestError).
    """
    engine = get_engine(database_url)
    row = {
        "trace_id": trace_id,
        "node_id": node_id,
        "entry": entry,
        "record": {"claimed": True},
        "created_at": datetime.now(UTC),
    }
    with errors(engine, "claiming a notification"), engine.begin() as conn:
        return conn.execute(_insert_once(conn.dialect.name), row).rowcount == 1


def forget_local(trace_id: str | None = None) -> None:
    """Drop this process's memory (of one run, or all)."""
    with _lock:
        for key in [k for k in _local if trace_id is None or k[0] == trace_id]:
            del _local[key]


def forget(trace_id: str, *, database_url: str | None = None) -> None:
    """Drop every memory of one run, stored and local."""
    forget_local(trace_id)
    from sqlalchemy import delete

    from nodes.incidents.tables import run_memory_table as Mem

    engine = get_engine(database_url)
    with errors(engine, "forgetting a run"), engine.begin() as conn:
        conn.execute(delete(Mem).where(Mem.c.trace_id == trace_id))


def outcome_in(conn, once: tuple[str, str, str]) -> dict[str, Any] | None:
    """The outcome an earlier attempt kept for (trace id, node id, digest), read in `conn`'s transaction."""
    from sqlalchemy import select

    from nodes.incidents.tables import run_memory_table as Mem

    trace_id, node_id, digest = once
    query = select(Mem.c.record).where(
        Mem.c.trace_id == trace_id, Mem.c.node_id == node_id, Mem.c.entry == f"ingest:{digest}"
    )
    row = conn.execute(query).first()
    return row.record if row is not None else None


def keep_outcome(conn, once: tuple[str, str, str], result: dict[str, Any], now: datetime) -> None:
    """Keep an attempt's outcome in `conn`'s transaction, so it commits with what the attempt wrote."""

    trace_id, node_id, digest = once
    row = {"trace_id": trace_id, "node_id": node_id, "entry": f"ingest:{digest}", "record": result}
    conn.execute(_insert_once(conn.dialect.name), {**row, "created_at": now})


def _insert_once(dialect: str):
    from nodes.incidents.tables import run_memory_table as Mem

    index = ["trace_id", "node_id", "entry"]
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(Mem).on_conflict_do_nothing(index_elements=index)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(Mem).on_conflict_do_nothing(index_elements=index)
