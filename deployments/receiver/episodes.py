"""Alert episodes: which firing of an alert a delivery belongs to, for formats that do not say.

Alertmanager and Grafana's unified alerting stamp every alert with `startsAt`, so a
re-fire after a resolve carries a new start and a new idempotency key. Grafana legacy
alerts carry no start at all, and CloudWatch, Datadog and Zabbix stamp only the firing
side; a generic payload may carry none. For those, the receiver counts episodes in a
small `receiver_episodes` table (in the journal's database, else the incident store's):
a firing delivery after a resolved one for the same alert starts the next episode, and
the episode's token goes into the key. A repeated delivery (the same status again) stays
in its episode, so it still finds the run already made. Tokens are random, never a
count, so a row pruned after EPISODE_RETENTION_SECONDS of silence cannot make a later
episode's key collide with an old one's (Prefect keeps keys as long as their runs).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from nodes.errors import OpsflowError

if TYPE_CHECKING:  # sqlalchemy loads on first use
    from sqlalchemy import Engine, Table
    from sqlalchemy.dialects import postgresql, sqlite

__all__ = ["Episodes", "needs_episodes"]

log = logging.getLogger("opsflow.receiver")

# formats whose alerts carry their own start on every delivery, firing or resolved
_STARTS_AT_FORMATS = ("alertmanager", "grafana")
EPISODE_RETENTION_SECONDS = 30 * 86400.0  # an alert silent this long starts afresh
PRUNE_EVERY_SECONDS = 3600.0


def needs_episodes(format_name: str | None, alerts: list[dict[str, Any]]) -> bool:
    """Whether the alerts' own fields cannot tell a new episode from a repeat."""
    if not alerts:
        return False
    return format_name not in _STARTS_AT_FORMATS or any(not a.get("starts_at") for a in alerts)


def _table(metadata):
    from sqlalchemy import Column, Float, String, Table

    return Table(
        "receiver_episodes",
        metadata,
        Column("id", String(64), primary_key=True),  # sha256 of definition, group, fingerprint
        Column("status", String(16), nullable=False),
        Column("episode", String(32), nullable=False),  # the episode's random token
        Column("updated_at", Float, nullable=False),
    )


class Episodes:
    """The episode table, created on first use (a receiver fed only Alertmanager never needs it)."""

    def __init__(self, url: str | None = None):
        from sqlalchemy import MetaData

        self.url = url
        self.table = _table(MetaData())
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        self._next_prune = 0.0

    def _ready(self) -> Engine:
        from sqlalchemy import text

        from nodes.incidents.db import errors, get_engine

        with self._lock:
            if self._engine is None:
                engine = get_engine(self.url)
                with errors(engine, "creating the receiver's episode table"), engine.begin() as conn:
                    if conn.dialect.name == "postgresql":  # receivers starting together must not race
                        conn.execute(text("SELECT pg_advisory_xact_lock(4242061003)"))
                    self.table.create(conn, checkfirst=True)
                self._engine = engine
        return self._engine

    def number(self, scope: str, alerts: list[dict[str, Any]]) -> dict[str, str]:
        """Record the delivery's statuses; fingerprint → the token of its episode.

        One statement per alert (an upsert that reads the row it locks), in fingerprint
        order so two deliveries of one group never deadlock; concurrent deliveries of the
        same re-fire agree on one new episode.
        """
        from sqlalchemy import and_, case

        from nodes.incidents.db import errors

        engine = self._ready()
        t = self.table
        statuses = {a["fingerprint"]: a["status"] for a in alerts}
        now = time.time()
        found: dict[str, str] = {}
        with errors(engine, "counting alert episodes"), engine.begin() as conn:
            for fingerprint in sorted(statuses):
                blob = f"{scope}\n{fingerprint}".encode("utf-8", "surrogatepass")
                row_id = hashlib.sha256(blob).hexdigest()
                token = uuid.uuid4().hex
                stmt = _insert(engine, t).values(
                    id=row_id, status=statuses[fingerprint], episode=token, updated_at=now
                )
                refire = and_(t.c.status == "resolved", stmt.excluded.status == "firing")
                stmt = stmt.on_conflict_do_update(
                    index_elements=["id"],
                    set_={
                        "episode": case((refire, stmt.excluded.episode), else_=t.c.episode),
                        "status": stmt.excluded.status,
                        "updated_at": stmt.excluded.updated_at,
                    },
                )
                found[fingerprint] = conn.execute(stmt.returning(t.c.episode)).scalar_one()
        if time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + PRUNE_EVERY_SECONDS
            try:
                self.prune()
            except OpsflowError as exc:  # the episodes are recorded; pruning waits for the next hour
                log.warning("receiver: %s", exc)
        return found

    def prune(self, older_than: float = EPISODE_RETENTION_SECONDS) -> int:
        """Forget alerts not delivered for `older_than` seconds; returns how many."""
        from sqlalchemy import delete

        from nodes.incidents.db import errors

        engine = self._ready()
        with errors(engine, "pruning alert episodes"), engine.begin() as conn:
            return conn.execute(
                delete(self.table).where(self.table.c.updated_at < time.time() - older_than)
            ).rowcount


def _insert(engine: Engine, table: Table) -> postgresql.Insert | sqlite.Insert:
    """The engine's dialect's INSERT: both have the ON CONFLICT clauses the upsert uses."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
