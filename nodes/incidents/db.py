"""Incident store connections: the database URL, one cached engine per URL, error translation.

SQLite runs in WAL mode with a busy timeout and takes its write lock when a
transaction begins (`BEGIN IMMEDIATE`), so concurrent writers queue instead of
failing halfway; PostgreSQL uses psycopg (v3).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from nodes.errors import IngestError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["ENV_VAR", "database_url", "default_url", "dispose_engines", "errors", "get_engine"]

ENV_VAR = "OPSFLOW_DATABASE_URL"

_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def default_url() -> str:
    return f"sqlite:///{Path.home() / '.opsflow' / 'incidents.db'}"


def database_url(explicit: str | None = None) -> str:
    """The store's URL: `explicit`, else $OPSFLOW_DATABASE_URL, else ~/.opsflow/incidents.db.

    `postgres://` and `postgresql://` URLs are given the installed psycopg (v3) driver.
    """
    url = explicit or os.environ.get(ENV_VAR) or default_url()
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def get_engine(url: str | None = None) -> Engine:
    """The one engine of this process for `url`, its schema created on first use."""
    url = database_url(url)
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _create_engine(url)
            with errors(engine, "creating the schema"):
                _create_schema(engine)
            _engines[url] = engine
    return engine


def dispose_engines() -> None:
    """Close every cached engine (tests, benchmarks, and after a fork)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


def _forget_engines_after_fork() -> None:
    for engine in _engines.values():
        engine.dispose(close=False)  # the parent's connections stay the parent's
    _engines.clear()


os.register_at_fork(after_in_child=_forget_engines_after_fork)


def _create_engine(url: str) -> Engine:
    from sqlalchemy import create_engine, event
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(parsed, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_on_connect)
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        elif parsed.get_backend_name() == "postgresql":
            engine = create_engine(parsed, pool_pre_ping=True)
        else:
            raise IngestError(
                f"database_url: unsupported database {parsed.get_backend_name()!r} "
                "(use sqlite:/// or postgresql+psycopg://)"
            )
    except (ArgumentError, NoSuchModuleError, ValueError, OSError) as exc:
        raise IngestError(
            f"database_url is not usable ({type(exc).__name__}); expected "
            "sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
        ) from None
    return engine


def _sqlite_on_connect(dbapi_connection, _record) -> None:
    """WAL lets readers run beside the writer; transactions are begun by hand (IMMEDIATE)."""
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _create_schema(engine: Engine) -> None:
    from sqlalchemy import text

    from nodes.incidents.tables import metadata

    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # parallel first runs must not race each other's CREATE TABLE
            conn.execute(text("SELECT pg_advisory_xact_lock(4242061001)"))
        metadata.create_all(conn)
        _add_missing_columns(conn)


# columns added since a store's tables were first created: (table, column, SQL type)
_ADDED_COLUMNS = (("opsflow_incidents", "truncated_alerts", "INTEGER"),)


def _add_missing_columns(conn) -> None:
    """Bring a store made by an earlier version up to date (create_all adds no columns)."""
    from sqlalchemy import inspect, text

    inspector = inspect(conn)
    for table, column, kind in _ADDED_COLUMNS:
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))


@contextmanager
def errors(engine: Engine, action: str) -> Iterator[None]:
    """Translate SQLAlchemy errors: connection trouble and lost races are worth a retry."""
    from sqlalchemy.exc import IntegrityError, InterfaceError, OperationalError, SQLAlchemyError

    try:
        yield
    except IngestError:
        raise
    except SQLAlchemyError as exc:
        retryable = isinstance(exc, OperationalError | InterfaceError | IntegrityError)
        reason = str(getattr(exc, "orig", None) or type(exc).__name__).strip().splitlines()
        where = engine.url.render_as_string(hide_password=True)
        raise IngestError(
            f"incident store ({where}): {action} failed: {reason[0] if reason else exc}",
            retryable=retryable,
        ) from exc
