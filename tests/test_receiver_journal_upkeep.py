"""The journal over time: failed entries re-delivered, the shared backlog, and the retention.

Against the session's real Prefect server (directly, or through a proxy that is down),
SQLite journal files, and one PostgreSQL journal shared by two receivers.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from pathlib import Path

import httpx
import pytest
from test_receiver import (  # noqa: F401
    Proxy,
    ThreadedServer,
    _deploy,
    alertmanager,
    copy_shipped,
    deployments,
    free_port,
    unique,
)
from test_receiver_journal import wait_for_delivery

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def undeployed(tmp_path, monkeypatch) -> str:
    """A valid definition with no deployment (yet), beside the shipped alert-triage."""
    name = unique("later-").lower()
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    shipped = Path(__file__).resolve().parent.parent / "definitions"
    copy_shipped("alert-triage", definitions, name)
    shutil.copy(shipped / "alert-triage.json", definitions)
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(definitions))
    return name


def test_a_failed_entry_is_queued_again_when_the_alert_is_delivered_again(
    deployments,  # noqa: F811
    undeployed,
    tmp_path,
):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    payload = alertmanager(unique("Refused"))
    with TestClient(create_app(timeout=60, journal=f"sqlite:///{tmp_path / 'j.db'}")) as client:
        first = client.post("/pipeline", params={"definition": undeployed}, json=payload).json()
        failed = wait_for_delivery(client, first["delivery_id"], "failed")
        assert "pipeline serve" in failed["error"]
        asyncio.run(_deploy([undeployed]))  # the operator fixes the cause; the sender retries
        again = client.post("/pipeline", params={"definition": undeployed}, json=payload)
        assert again.status_code == 202
        assert again.json()["delivery_id"] == first["delivery_id"]
        assert again.json()["duplicate"] is False and again.json()["queued"] is True
        created = wait_for_delivery(client, first["delivery_id"], "created")
        third = client.post("/pipeline", params={"definition": undeployed}, json=payload).json()
    assert created["flow_run_id"] and created["error"] is None
    assert third["duplicate"] is True and third["flow_run_id"] == created["flow_run_id"]


@pytest.mark.postgres
def test_receivers_sharing_a_journal_count_the_backlog_the_other_dispatched(
    deployments,  # noqa: F811
    postgres_url,
    prefect_api,
    monkeypatch,
):
    """A's Prefect is down, so B dispatches A's entries: A must see its backlog fall and take
    alerts again. Counting only its own writes, A answered 503 for ever."""
    from deployments.receiver import journal as _receiver_journal
    from deployments.receiver.app import create_app

    monkeypatch.setattr(_receiver_journal, "CAPACITY", 3)
    down = f"http://127.0.0.1:{free_port()}/api"  # nothing listens: Prefect is down for A
    with (
        ThreadedServer(create_app(down, timeout=2, journal=postgres_url)) as a,
        ThreadedServer(create_app(prefect_api, timeout=60, journal=postgres_url)) as b,
        httpx.Client(timeout=30) as http,
    ):
        accepted = [http.post(f"{a.url}/pipeline", json=alertmanager(unique("Shared"))) for _ in range(3)]
        assert [r.status_code for r in accepted] == [202] * 3
        assert http.post(f"{a.url}/pipeline", json=alertmanager(unique("Full"))).status_code == 503
        for answer in accepted:  # B's dispatcher creates them (A's cannot reach Prefect)
            deadline = time.monotonic() + 60
            while (d := http.get(f"{b.url}/deliveries/{answer.json()['delivery_id']}").json())[
                "status"
            ] != "created":
                assert time.monotonic() < deadline, d
                time.sleep(0.2)
        deadline = time.monotonic() + 30
        while (late := http.post(f"{a.url}/pipeline", json=alertmanager(unique("Late")))).status_code != 202:
            assert late.status_code == 503 and time.monotonic() < deadline, late.text
            time.sleep(0.5)
        health = http.get(f"{a.url}/healthz").json()
    assert health["prefect"] == "unreachable" and health["journal_backlog"] <= 1


def test_created_entries_expire_after_the_retention_and_failed_ones_are_kept(
    deployments,  # noqa: F811
    undeployed,
    tmp_path,
    monkeypatch,
):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app
    from deployments.receiver.ids import new_id

    monkeypatch.setenv("OPSFLOW_JOURNAL_RETENTION_DAYS", str(1.5 / 86400))  # 1.5 s
    with TestClient(create_app(timeout=60, journal=f"sqlite:///{tmp_path / 'j.db'}")) as client:
        journal = client.app.state.journal
        created = client.post("/pipeline", json=alertmanager(unique("Kept"))).json()["delivery_id"]
        wait_for_delivery(client, created, "created")
        time.sleep(1.6)  # the created entry is past its retention
        refused = client.post("/pipeline", params={"definition": undeployed}, json=alertmanager(unique("F")))
        failed = refused.json()["delivery_id"]
        wait_for_delivery(client, failed, "failed")  # failed now: its retention starts now
        assert journal.prune() == 1
        expired = client.get(f"/deliveries/{created}")
        kept = client.get(f"/deliveries/{failed}").json()
        time.sleep(1.6)
        assert journal.prune() == 1
        failed_later = client.get(f"/deliveries/{failed}").json()
        young_unknown = client.get(f"/deliveries/{new_id()}")
        foreign = client.get(f"/deliveries/{uuid.uuid4()}")
    assert expired.status_code == 200
    assert expired.json() == {
        "delivery_id": created,
        "definition": None,
        "trace_id": None,
        "status": "expired",
        "flow_run_id": None,
        "attempts": 0,
        "error": None,
    }
    assert kept["status"] == "failed" and failed_later["status"] == "expired"
    assert young_unknown.status_code == 404 and foreign.status_code == 404


def test_a_bad_retention_setting_is_a_clear_error(tmp_path, monkeypatch):
    from deployments.receiver.journal import Journal
    from nodes.errors import OpsflowError

    for bad in ("seven", "0", "-1", "nan"):
        monkeypatch.setenv("OPSFLOW_JOURNAL_RETENTION_DAYS", bad)
        with pytest.raises(OpsflowError, match="OPSFLOW_JOURNAL_RETENTION_DAYS: expected a positive"):
            Journal(f"sqlite:///{tmp_path / 'j.db'}")


def test_a_failed_entry_is_queued_again_even_when_the_journal_is_full(tmp_path):
    from deployments.receiver.http import ReceiverError
    from deployments.receiver.journal import Journal

    async def scenario():
        journal = Journal(f"sqlite:///{tmp_path / 'j.db'}", capacity=1)
        writer = asyncio.create_task(journal.run_writer())
        try:
            refused = await journal.append("key-a", "alert-triage", {"trace_id": "ta"})
            await asyncio.to_thread(journal.failed, refused.id, "HTTP 422 refused")
            await journal.append("key-b", "alert-triage", {"trace_id": "tb"})  # now full
            with pytest.raises(ReceiverError):
                await journal.append("key-c", "alert-triage", {"trace_id": "tc"})
            return refused, await journal.append("key-a", "alert-triage", {"trace_id": "again"})
        finally:
            writer.cancel()

    refused, again = asyncio.run(scenario())
    assert again.id == refused.id and again.status == "queued" and again.duplicate is False
