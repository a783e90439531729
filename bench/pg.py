"""A throw-away PostgreSQL database for one benchmark run: created on entry, dropped on exit."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator

__all__ = [
    "DEFAULT_ADMIN_URL",
    "TemporaryDatabase",
    "admin_url_from_env",
    "server_version",
    "temporary_database",
]

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url_from_env() -> str | None:
    """$OPSFLOW_TEST_POSTGRES_URL, the URL the test suite and CI use, if set."""
    return os.environ.get("OPSFLOW_TEST_POSTGRES_URL") or None


class TemporaryDatabase:
    def __init__(self, admin_url: str, name: str) -> None:
        self.admin_url = admin_url
        self.name = name

    def url(self, driver: str) -> str:
        """SQLAlchemy URL of the database for `driver`: "psycopg" (incident store) or "asyncpg" (Prefect)."""
        from psycopg.conninfo import conninfo_to_dict

        params = conninfo_to_dict(self.admin_url)
        password = f":{params['password']}" if params.get("password") else ""
        host = params.get("host", "127.0.0.1")
        port = params.get("port", 5432)
        return f"postgresql+{driver}://{params.get('user', 'postgres')}{password}@{host}:{port}/{self.name}"


@contextlib.contextmanager
def temporary_database(admin_url: str, prefix: str) -> Iterator[TemporaryDatabase]:
    """A fresh database on the server `admin_url` reaches; psycopg.Error if it cannot be made.

    Whoever uses it must close its connections (or stop its server) before the block
    ends; the drop forces out any that remain.
    """
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'create database "{name}"')
    try:
        yield TemporaryDatabase(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'drop database if exists "{name}" with (force)')


def server_version(admin_url: str) -> str:
    """ "PostgreSQL 15.x" as the server reports it, or why it could not be asked."""
    import psycopg

    try:
        with psycopg.connect(admin_url, connect_timeout=5) as conn:
            (version,) = conn.execute("show server_version").fetchone()
    except psycopg.Error as exc:
        return f"unreachable ({str(exc).splitlines()[0]})"
    return f"PostgreSQL {version.split()[0]}"
