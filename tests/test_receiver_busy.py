"""The receiver's Prefect client re-sends a request a Prefect server on SQLite answered 503
("database is locked") at once, instead of after Prefect's 2 s / 4 s back-off (the bulk of
an alert's latency on SQLite, bench/latency.py)."""

from __future__ import annotations

import asyncio

from deployments.receiver.prefect import BUSY_RETRY_DELAYS, prefect_client

LOCKED = {"exception_message": "Service Unavailable"}  # Prefect's answer to a locked SQLite


def _health(api_url: str):
    """api_healthcheck() through the receiver's client, Prefect's own retries off (None: healthy)."""
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    async def check():
        async with prefect_client(api_url) as client:
            return await client.api_healthcheck()

    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
        return asyncio.run(check())


def test_a_locked_database_answer_is_sent_again_by_the_receivers_client(httpserver):
    httpserver.expect_ordered_request("/api/health").respond_with_json(LOCKED, status=503)
    httpserver.expect_ordered_request("/api/health").respond_with_json(LOCKED, status=503)
    httpserver.expect_ordered_request("/api/health").respond_with_json(True)

    assert _health(httpserver.url_for("/api")) is None
    assert len(httpserver.log) == 3
    httpserver.check_assertions()


def test_a_503_that_persists_or_asks_to_wait_still_reaches_the_caller(httpserver):
    httpserver.expect_request("/api/health").respond_with_json(LOCKED, status=503)
    failed = _health(httpserver.url_for("/api"))
    assert failed is not None and "503" in str(failed)
    assert len(httpserver.log) == len(BUSY_RETRY_DELAYS) + 1  # bounded: then Prefect's back-off

    httpserver.clear()
    httpserver.expect_request("/api/health").respond_with_json(
        LOCKED, status=503, headers={"Retry-After": "5"}
    )
    assert _health(httpserver.url_for("/api")) is not None
    assert len(httpserver.log) == 1  # the server said when: that is Prefect's client's to honour
