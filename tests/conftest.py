"""Shared test set-up: an isolated environment, and PostgreSQL when the machine has it."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    """URL of a reachable PostgreSQL server.

    Skips when none answers, unless OPSFLOW_TEST_POSTGRES_URL is set: then the caller
    (CI) promised one, and its absence is a failure, not a skip.
    """
    import psycopg

    url = os.environ.get("OPSFLOW_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("select 1")
    except psycopg.Error as exc:
        if os.environ.get("OPSFLOW_TEST_POSTGRES_URL"):
            pytest.fail(f"OPSFLOW_TEST_POSTGRES_URL is set but PostgreSQL is unreachable: {exc}")
        pytest.skip(f"no PostgreSQL at {url} (set OPSFLOW_TEST_POSTGRES_URL to run these tests)")
    return url


@pytest.fixture
def postgres_url(postgres_admin_url: str):
    """A fresh, empty database for one test, dropped afterwards (psycopg URL form)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"opsflow_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    params = conninfo_to_dict(postgres_admin_url)
    params["dbname"] = name
    user = params.get("user", "postgres")
    host = params.get("host", "127.0.0.1")
    port = params.get("port", 5432)
    password = f":{params['password']}" if params.get("password") else ""
    yield f"postgresql+psycopg://{user}{password}@{host}:{port}/{name}"
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
