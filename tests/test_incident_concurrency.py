"""Workers never create the same incident twice: concurrent deliveries for a group the store
has not seen, from many threads in several processes, on SQLite and on PostgreSQL.

The README claims "incidents are deduplicated with row locks, so workers never create the
same incident twice". The outcome of concurrent deliveries must be one a serial order of
them gives: resolved-only or firing-only deliveries make one incident; a mix makes one
open incident, preceded by at most one resolved incident when a resolved-only delivery
came first. No receive is lost either.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from nodes.incidents import store

PROCESSES = 3
THREADS = 6
TRIALS = 3  # unseen groups per scenario and backend


pytestmark = pytest.mark.usefixtures("fresh_engines")


def alert(fp: str, status: str) -> dict:
    return {
        "fingerprint": fp,
        "status": status,
        "severity": "critical",
        "title": f"alert {fp}",
        "description": "",
        "labels": {"fp": fp},
        "annotations": {},
        "source": "generic",
        "starts_at": None,
        "ends_at": None,
        "generator_url": None,
    }


def delivery(kind: str, n: int) -> list[dict]:
    """resolved-only: `r` resolved; firing-only: `f` firing; mixed: `f` firing beside `r` resolved."""
    if kind == "resolved":
        return [alert("r", "resolved")]
    if kind == "firing":
        return [alert("f", "firing")]
    return [alert("f", "firing"), alert(f"r{n % 2}", "resolved")]


def deliveries(scenario: str, count: int) -> list[list[dict]]:
    if scenario == "mixed":
        kinds = ("resolved", "firing", "mixed")
        return [delivery(kinds[n % 3], n) for n in range(count)]
    return [delivery(scenario, n) for n in range(count)]


def ingest_together(url: str, keys: list[str], scenario: str, start_at: float, offset: int) -> int:
    """THREADS deliveries per group, released at once (at `start_at`, across processes)."""
    barrier = threading.Barrier(THREADS)
    work = [
        (key, alerts)
        for key in keys
        for alerts in deliveries(scenario, PROCESSES * THREADS)[offset : offset + THREADS]
    ]

    def one(alerts_of_thread: list[tuple[str, list[dict]]]) -> int:
        barrier.wait(timeout=60)
        for key, alerts in alerts_of_thread:
            store.ingest(alerts, key=key, title=key, source="generic", database_url=url)
        return len(alerts_of_thread)

    per_thread = [work[i::THREADS] for i in range(THREADS)]
    time.sleep(max(0.0, min(10.0, start_at - time.time())))
    with ThreadPoolExecutor(THREADS) as pool:
        return sum(pool.map(one, per_thread))


def check_serial_outcome(url: str, key: str, scenario: str) -> None:
    from sqlalchemy import select

    from nodes.incidents.db import get_engine
    from nodes.incidents.tables import alerts_table as A
    from nodes.incidents.tables import incidents_table as Inc

    with get_engine(url).connect() as conn:
        incidents = conn.execute(
            select(Inc.c.id, Inc.c.status).where(Inc.c.key == key).order_by(Inc.c.id)
        ).all()
        alerts = conn.execute(
            select(A.c.incident_id, A.c.fingerprint, A.c.receive_count).where(
                A.c.incident_id.in_([i.id for i in incidents])
            )
        ).all()
    total = sum(a.receive_count for a in alerts)
    delivered = sum(len(d) for d in deliveries(scenario, PROCESSES * THREADS))
    assert total == delivered, f"{scenario}: {delivered - total} receives lost"
    statuses = [i.status for i in incidents]
    if scenario == "resolved":
        assert statuses == ["resolved"], f"resolved-only deliveries made {len(incidents)} incidents"
    elif scenario == "firing":
        assert statuses == ["open"], f"firing-only deliveries made {len(incidents)} incidents"
    else:
        assert statuses in (["open"], ["resolved", "open"]), statuses
        if len(incidents) == 2:  # a resolved-only delivery came first: it holds only `r`
            first = {a.fingerprint for a in alerts if a.incident_id == incidents[0].id}
            assert first == {"r"}, first


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", ["resolved", "firing", "mixed"])
def test_workers_never_create_the_same_incident_twice(db_url, scenario):
    keys = [f"group-{scenario}-{uuid.uuid4().hex[:8]}" for _ in range(TRIALS)]
    store.get_engine(db_url)  # the schema exists before the race
    store.dispose_engines()
    start_at = time.time() + 4  # spawned processes import the store first
    context = multiprocessing.get_context("spawn")
    with context.Pool(PROCESSES) as pool:
        jobs = [
            pool.apply_async(ingest_together, (db_url, keys, scenario, start_at, i * THREADS))
            for i in range(PROCESSES)
        ]
        done = sum(job.get(timeout=240) for job in jobs)
    assert done == PROCESSES * THREADS * TRIALS
    for key in keys:
        check_serial_outcome(db_url, key, scenario)
