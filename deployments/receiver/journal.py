"""The receiver's journal: alerts accepted in a burst faster than Prefect creates runs, never lost.

With a journal (`pipeline receiver --journal`) an alert is answered 202 once it is
committed to the `receiver_journal` table of the incident store's database, not
once Prefect has its run. A dispatcher then creates the runs at the pace Prefect
allows, under the same idempotency keys, and keeps retrying while Prefect is down.
A storm of alerts is absorbed instead of refused, at the cost of the 202 carrying a
delivery id rather than the flow run id (`GET /deliveries/{id}` gives it later).

Commits are grouped: requests arriving together share one transaction, so the
journal takes thousands of alerts a second on SQLite. Several receivers may share
one PostgreSQL journal: they claim entries with a lease, and a run created twice
for one key is still one run, because Prefect keeps the idempotency key. The backlog
each receiver answers 503 by is counted in the database every few seconds (another
receiver may have dispatched its entries), and adjusted in between by its own writes.

An entry Prefect refused for good ("failed") is queued again by a re-delivery of the
same alert, so the sender's retry retries the run. Entries are kept for a retention
($OPSFLOW_JOURNAL_RETENTION_DAYS, default 7): created ones from when they were
received, failed ones from when they failed; a pruned id's delivery is "expired"
(ids are time-ordered, so the age of an id no longer in the table is known).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from deployments.receiver.http import ReceiverError
from deployments.receiver.ids import id_time, new_id
from deployments.receiver.ids import retention_days as retention_days_setting

__all__ = ["Claimed", "Entry", "Journal"]

log = logging.getLogger("opsflow.receiver")

QUEUED, CREATED, FAILED, EXPIRED = "queued", "created", "failed", "expired"
BACKLOG_REFRESH_SECONDS = 2.0  # how stale the backlog a receiver answers 503 by may be
PRUNE_EVERY_SECONDS = 600.0
CAPACITY = 100_000  # entries waiting for a run, past which the receiver answers 503
# a claimed entry is another dispatcher's to retry once its lease ends (its process died)
LEASE_SECONDS = 60.0
MAX_BACKOFF_SECONDS = 10.0  # per entry; the dispatcher also pauses as a whole
# one commit takes at most this many requests; the rest wait for the next
WRITE_BATCH = 500


@dataclass(frozen=True)
class Entry:
    """A delivery as the journal holds it (for a re-delivery: the first one)."""

    id: str
    definition: str
    trace_id: str
    status: str
    flow_run_id: str | None
    duplicate: bool = False
    attempts: int = 0
    error: str | None = None
    received_at: float = 0.0


@dataclass(frozen=True)
class Claimed:
    """An entry a dispatcher took to create its flow run."""

    id: str
    key: str
    definition: str
    parameters: dict[str, Any]
    attempts: int


def _table(metadata):
    from sqlalchemy import Column, Float, Index, Integer, String, Table, Text

    return Table(
        "receiver_journal",
        metadata,
        Column("id", String(36), primary_key=True),
        Column("key", String(400), nullable=False, unique=True),
        Column("definition", String(128), nullable=False),
        Column("trace_id", String(128), nullable=False),
        Column("parameters", Text, nullable=False),
        Column("status", String(16), nullable=False),
        Column("due_at", Float, nullable=False),
        Column("attempts", Integer, nullable=False, default=0),
        Column("flow_run_id", String(36)),
        Column("error", Text),
        Column("received_at", Float, nullable=False),
        Index("ix_receiver_journal_due", "status", "due_at"),
    )


class Journal:
    """The journal table, its group-committing writer, and the dispatcher's claims.

    `capacity` bounds the entries still waiting for a run: past it the receiver says
    503 like the direct path, rather than letting a runaway sender fill the disk.
    """

    def __init__(
        self, url: str | None = None, *, capacity: int | None = None, retention_days: float | None = None
    ):
        from sqlalchemy import MetaData, text

        from nodes.incidents.db import errors, get_engine

        self.engine = get_engine(url)
        self.capacity = CAPACITY if capacity is None else capacity
        self.retention = 86400.0 * (
            retention_days if retention_days is not None else retention_days_setting()
        )
        self.table = _table(MetaData())
        self._errors = errors
        with errors(self.engine, "creating the receiver journal"), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":  # receivers starting together must not race
                conn.execute(text("SELECT pg_advisory_xact_lock(4242061002)"))
            self.table.create(conn, checkfirst=True)
        self.queued = self.backlog()
        self.wakeup = asyncio.Event()  # set when entries were added
        self._pending: list[tuple[dict[str, Any], asyncio.Future]] = []
        self._has_pending = asyncio.Event()

    # -- the writer -------------------------------------------------------------------------

    async def append(self, key: str, definition: str, parameters: dict[str, Any]) -> Entry:
        """Commit the delivery (or find the earlier one with this key); 503 when the journal is full
        or its database is unreachable, so the sender retries."""
        if self.queued >= self.capacity:
            known = await asyncio.to_thread(self.find, key)
            if known is not None and known.status != FAILED:  # a re-delivery is answered even when full
                return known
            if known is None:  # a failed one is queued again below, past the capacity by one
                raise ReceiverError(
                    503,
                    f"the receiver journal holds {self.queued} alerts still waiting for Prefect; retry later",
                    {"Retry-After": "30"},
                )
        row = {
            "id": new_id(),
            "key": key,
            "definition": definition,
            "trace_id": parameters["trace_id"],
            "parameters": json.dumps(parameters, separators=(",", ":"), ensure_ascii=False),
            "status": QUEUED,
            "attempts": 0,
            "received_at": time.time(),
        }
        row["due_at"] = row["received_at"]
        future = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._has_pending.set()
        return await future

    async def run_writer(self) -> None:
        """Commit waiting requests in batches until cancelled: one transaction per batch.

        The writer has a thread of its own, so the dispatcher's journal updates (in the
        shared default pool) never make an answer wait.
        """
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(1, thread_name_prefix="opsflow-journal-writer") as thread:
            while True:
                await self._has_pending.wait()
                await self._commit_pending(loop, thread)

    async def _commit_pending(self, loop, thread) -> None:
        """One transaction for up to WRITE_BATCH waiting requests; each gets its entry or a 503."""
        batch, self._pending = self._pending[:WRITE_BATCH], self._pending[WRITE_BATCH:]
        if not self._pending:
            self._has_pending.clear()
        try:
            entries = await loop.run_in_executor(thread, self._write, [row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiting request must get an answer
            log.error("receiver journal: commit of %d alert(s) failed: %s", len(batch), exc)
            error = ReceiverError(
                503, "the receiver journal cannot be written now; retry later", {"Retry-After": "5"}
            )
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        added = 0
        for (_, future), entry in zip(batch, entries, strict=True):
            added += not entry.duplicate
            if not future.done():
                future.set_result(entry)
        self.queued += added
        if added:
            self.wakeup.set()

    def _write(self, rows: list[dict[str, Any]]) -> list[Entry]:
        """Insert the rows whose key is new, queue again the failed entries of known keys;
        every row's entry (the earlier one for a known key: a duplicate unless requeued)."""
        from sqlalchemy import select, update

        t = self.table
        insert = _insert_ignoring_known_keys(self.engine, t)
        keys = {row["key"] for row in rows}
        ids = {row["id"] for row in rows}
        with self._errors(self.engine, "writing the receiver journal"), self.engine.begin() as conn:
            conn.execute(insert, rows)
            found = conn.execute(select(t).where(t.c.key.in_(keys))).mappings().all()
            retry = [r["id"] for r in found if r["status"] == FAILED and r["id"] not in ids]
            if retry:  # Prefect refused it for good once; the sender's re-delivery tries again
                values = {"status": QUEUED, "due_at": time.time(), "attempts": 0}
                conn.execute(update(t).where(t.c.id.in_(retry), t.c.status == FAILED).values(**values))
                found = conn.execute(select(t).where(t.c.key.in_(keys))).mappings().all()
        by_key = {record["key"]: record for record in found}
        entries, requeued = [], set(retry)
        for row in rows:
            record = by_key[row["key"]]
            fresh = record["id"] == row["id"] or record["id"] in requeued
            requeued.discard(record["id"])  # a second delivery in the batch is a duplicate
            entries.append(_entry(record, duplicate=not fresh))
        if retry:
            log.warning("receiver journal: %d failed alert(s) re-delivered: queued again", len(retry))
        return entries

    # -- the dispatcher's side --------------------------------------------------------------

    def claim(self, limit: int) -> list[Claimed]:
        """Take up to `limit` due entries, oldest first, leasing them so no other dispatcher does."""
        from sqlalchemy import select, update

        now = time.time()
        t = self.table
        query = select(t.c.id, t.c.key, t.c.definition, t.c.parameters, t.c.attempts)
        query = query.where(t.c.status == QUEUED, t.c.due_at <= now).order_by(t.c.due_at).limit(limit)
        with self._errors(self.engine, "claiming journal entries"), self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = conn.execute(query).all()
            if rows:
                ids = [row.id for row in rows]
                conn.execute(update(t).where(t.c.id.in_(ids)).values(due_at=now + LEASE_SECONDS))
        return [Claimed(r.id, r.key, r.definition, json.loads(r.parameters), r.attempts) for r in rows]

    def created(self, runs: dict[str, str]) -> None:
        """Record the flow runs of entries (entry id → flow run id), in one transaction."""
        self._finish(
            {
                entry_id: {"status": CREATED, "flow_run_id": run, "error": None}
                for entry_id, run in runs.items()
            }
        )

    def failed(self, entry_id: str, error: str) -> None:
        """Prefect refused the run for good (no deployment, too large): kept, with why, for a
        person, until re-delivered or its retention (counted from now, in `due_at`) ends."""
        self._finish({entry_id: {"status": FAILED, "error": error, "due_at": time.time()}})

    def retry_later(self, claimed: Claimed, error: str) -> float:
        """Put the entry back with exponential back-off; returns the delay."""
        from sqlalchemy import update

        delay = min(MAX_BACKOFF_SECONDS, 0.5 * 2**claimed.attempts)
        values = {"attempts": claimed.attempts + 1, "due_at": time.time() + delay, "error": error}
        with self._errors(self.engine, "updating the receiver journal"), self.engine.begin() as conn:
            conn.execute(update(self.table).where(self.table.c.id == claimed.id).values(**values))
        return delay

    def release(self, entry_ids: list[str]) -> None:
        """Hand back claimed entries now (a receiver stopping), rather than when their lease ends."""
        from sqlalchemy import update

        t = self.table
        with self._errors(self.engine, "updating the receiver journal"), self.engine.begin() as conn:
            conn.execute(
                update(t).where(t.c.id.in_(entry_ids), t.c.status == QUEUED).values(due_at=time.time())
            )

    def _finish(self, changes: dict[str, dict[str, Any]]) -> None:
        """End entries still queued (one commit); an entry another receiver ended stays as it is."""
        from sqlalchemy import update

        t = self.table
        done = 0
        with self._errors(self.engine, "updating the receiver journal"), self.engine.begin() as conn:
            for entry_id, values in changes.items():
                statement = update(t).where(t.c.id == entry_id, t.c.status == QUEUED).values(**values)
                done += conn.execute(statement).rowcount
        self.queued = max(0, self.queued - done)

    # -- upkeep -----------------------------------------------------------------------------

    async def run_upkeep(self) -> None:
        """Until cancelled: recount the backlog every few seconds, prune now and then."""
        next_prune = 0.0
        while True:
            try:
                self.queued = await asyncio.to_thread(self.backlog)
                if time.monotonic() >= next_prune:
                    await asyncio.to_thread(self.prune)
                    next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            except Exception as exc:  # noqa: BLE001 - upkeep must outlive a database outage
                log.error("receiver journal upkeep: %s", exc)
            await asyncio.sleep(BACKLOG_REFRESH_SECONDS)

    def prune(self) -> int:
        """Delete the entries past their retention (created: since received; failed: since
        they failed); queued ones are never pruned. Returns how many."""
        from sqlalchemy import and_, delete, or_

        t = self.table
        cutoff = time.time() - self.retention
        old = or_(
            and_(t.c.status == CREATED, t.c.received_at < cutoff),
            and_(t.c.status == FAILED, t.c.due_at < cutoff),
        )
        with self._errors(self.engine, "pruning the receiver journal"), self.engine.begin() as conn:
            pruned = conn.execute(delete(t).where(old)).rowcount
        if pruned:
            log.info("receiver journal: %d entries past their retention pruned", pruned)
        return pruned

    def expired(self, entry_id: str) -> bool:
        """Whether an id not in the table is one of ours received before the retention began."""
        received = id_time(entry_id)
        return received is not None and received < time.time() - self.retention

    # -- reading ----------------------------------------------------------------------------

    def get(self, entry_id: str) -> Entry | None:
        return self._read(self.table.c.id == entry_id)

    def find(self, key: str) -> Entry | None:
        """The entry of an earlier delivery with this key, marked a duplicate."""
        entry = self._read(self.table.c.key == key)
        return replace(entry, duplicate=True) if entry else None

    def _read(self, where) -> Entry | None:
        from sqlalchemy import select

        with self._errors(self.engine, "reading the receiver journal"), self.engine.connect() as conn:
            record = conn.execute(select(self.table).where(where)).mappings().first()
        return _entry(record) if record else None

    def backlog(self) -> int:
        """Entries still waiting for their flow run (all receivers sharing this journal)."""
        from sqlalchemy import func, select

        t = self.table
        with self._errors(self.engine, "reading the receiver journal"), self.engine.connect() as conn:
            return conn.execute(select(func.count()).select_from(t).where(t.c.status == QUEUED)).scalar_one()


def _entry(record, *, duplicate: bool = False) -> Entry:
    return Entry(
        id=record["id"],
        definition=record["definition"],
        trace_id=record["trace_id"],
        status=record["status"],
        flow_run_id=record["flow_run_id"],
        duplicate=duplicate,
        attempts=record["attempts"],
        error=record["error"],
        received_at=record["received_at"],
    )


def _insert_ignoring_known_keys(engine, table):
    """INSERT ... ON CONFLICT (key) DO NOTHING, in the engine's dialect: two receivers racing
    on one key leave one row and no error."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table).on_conflict_do_nothing(index_elements=["key"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing(index_elements=["key"])
