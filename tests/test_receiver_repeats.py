"""Repeat deliveries are counted on the incident, without a new run.

Alertmanager re-notifies a firing group every `repeat_interval`; the receiver answers such
a repeat `duplicate: true` and starts no run, so it tells the incident store itself: the
alerts' receive_count and last_seen_at move. Through the real receiver and the session's
Prefect server, direct and journaled; the first delivery is ingested by the real ingest
node, as its flow run would.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from test_receiver import ThreadedServer, alertmanager, deployments, unique  # noqa: F401

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def store_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", url)
    yield url
    from nodes.incidents.store import dispose_engines

    dispose_engines()


def ingest_as_the_run_would(payload: dict) -> dict:
    from nodes.base import NodeContext, RunInfo
    from nodes.runtime import execute_node

    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="alert-triage"), payload=payload)
    return execute_node("ingest", "ingest", {"driver": "auto"}, ctx)["output"]


def seen(url: str, incident_id: int) -> list[tuple[str, int, object]]:
    from sqlalchemy import select

    from nodes.incidents.db import get_engine
    from nodes.incidents.tables import alerts_table as A

    query = select(A.c.fingerprint, A.c.receive_count, A.c.last_seen_at).where(A.c.incident_id == incident_id)
    with get_engine(url).connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


@pytest.mark.parametrize("journaled", [False, True], ids=["direct", "journal"])
def test_a_repeat_delivery_moves_receive_count_and_last_seen_without_a_run(
    deployments,  # noqa: F811
    store_url,
    tmp_path,
    journaled,
):
    from deployments.receiver.app import create_app

    payload = alertmanager(unique("Repeat"))
    journal = f"sqlite:///{tmp_path / 'j.db'}" if journaled else False
    with ThreadedServer(create_app(timeout=60, journal=journal)) as server, httpx.Client() as http:
        first = http.post(f"{server.url}/pipeline", json=payload, timeout=60).json()
        incident = ingest_as_the_run_would(payload)["incident"]
        [(fingerprint, count, last_seen)] = seen(store_url, incident["id"])
        assert count == 1
        time.sleep(0.01)  # last_seen_at has a later time to move to
        repeats = [http.post(f"{server.url}/pipeline", json=payload, timeout=60).json() for _ in range(2)]
        # a resolved delivery is a new run, not a repeat of the firing one
        resolved = http.post(
            f"{server.url}/pipeline",
            json=alertmanager(payload["groupLabels"]["alertname"], "resolved"),
            timeout=60,
        ).json()
    assert all(r["duplicate"] for r in repeats) and not first["duplicate"] and not resolved["duplicate"]
    assert {r["delivery_id" if journaled else "flow_run_id"] for r in repeats} == {
        first["delivery_id" if journaled else "flow_run_id"]
    }
    [(_, count, later)] = seen(store_url, incident["id"])
    assert count == 3 and later > last_seen


def test_a_repeat_before_any_incident_is_stored_is_no_error(deployments, store_url):  # noqa: F811
    from deployments.receiver.app import create_app
    from nodes.incidents.store import list_incidents

    payload = alertmanager(unique("Early"))
    with ThreadedServer(create_app(timeout=60)) as server, httpx.Client(timeout=60) as http:
        answers = [http.post(f"{server.url}/pipeline", json=payload) for _ in range(2)]
    assert [a.status_code for a in answers] == [202, 202] and answers[1].json()["duplicate"] is True
    assert list_incidents() == []
