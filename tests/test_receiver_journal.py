"""The receiver with a journal: 202 once the alert is committed, its run created when Prefect can.

Against the session's real Prefect server (through a proxy that can be down), a real
SQLite journal file, and the machine's PostgreSQL for receivers sharing one journal.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx
import pytest
from support.ports import free_port
from test_receiver import Proxy, alertmanager, copy_shipped, deployments, read_run, unique  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def wait_for_delivery(client, delivery_id: str, status: str, timeout: float = 60) -> dict:
    """The delivery once it reaches `status` (the dispatcher works in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        found = client.get(f"/deliveries/{delivery_id}").json()
        if found.get("status") == status or time.monotonic() > deadline:
            assert found.get("status") == status, found
            return found
        time.sleep(0.1)


def test_an_alert_is_accepted_once_journaled_and_its_run_follows(deployments, tmp_path):  # noqa: F811
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    payload = alertmanager(unique("Journaled"))
    with TestClient(create_app(timeout=60, journal=f"sqlite:///{tmp_path / 'j.db'}")) as client:
        first = client.post("/pipeline", json=payload)
        assert first.status_code == 202, first.text
        accepted = first.json()
        assert accepted["delivery_id"] and accepted["definition"] == "alert-triage"
        assert accepted["duplicate"] is False
        delivery = wait_for_delivery(client, accepted["delivery_id"], "created")
        again = client.post("/pipeline", json=payload).json()
        health = client.get("/healthz").json()
    run = read_run(delivery["flow_run_id"])
    assert run.parameters["payload"] == payload and run.parameters["trace_id"] == accepted["trace_id"]
    assert again["delivery_id"] == accepted["delivery_id"] and again["duplicate"] is True
    assert again["flow_run_id"] == delivery["flow_run_id"] and again["queued"] is False
    assert health == {"status": "ok", "prefect": "ok", "journal_backlog": 0}


def test_alerts_are_taken_while_prefect_is_down_and_run_after_a_receiver_restart(
    deployments,  # noqa: F811
    prefect_api,
    tmp_path,
):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    journal = f"sqlite:///{tmp_path / 'j.db'}"
    upstream = httpx.URL(prefect_api)
    port = free_port()
    proxy = Proxy(port, (upstream.host, upstream.port))
    payloads = [alertmanager(unique("Storm")) for _ in range(5)]
    with TestClient(create_app(f"http://127.0.0.1:{port}/api", timeout=2, journal=journal)) as client:
        accepted = [client.post("/pipeline", json=p) for p in payloads]
        assert [r.status_code for r in accepted] == [202] * 5
        assert all(r.json()["queued"] and r.json()["flow_run_id"] is None for r in accepted)
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "prefect": "unreachable", "journal_backlog": 5}
        first = accepted[0].json()["delivery_id"]
        deadline = time.monotonic() + 30
        while (waiting := client.get(f"/deliveries/{first}").json())["attempts"] == 0:
            assert time.monotonic() < deadline, waiting
            time.sleep(0.1)
        assert waiting["status"] == "queued" and "Prefect API unavailable" in waiting["error"]
    # the receiver stopped with five alerts unrun; a new one, with Prefect back, runs them
    proxy.start()
    try:
        with TestClient(create_app(f"http://127.0.0.1:{port}/api", timeout=60, journal=journal)) as client:
            runs = [wait_for_delivery(client, r.json()["delivery_id"], "created") for r in accepted]
            assert client.get("/healthz").json()["journal_backlog"] == 0
    finally:
        proxy.stop()
    for payload, delivery in zip(payloads, runs, strict=True):
        assert read_run(delivery["flow_run_id"]).parameters["payload"] == payload
    assert len({d["flow_run_id"] for d in runs}) == 5


def test_a_run_prefect_refuses_is_kept_as_failed_with_prefects_reason(
    deployments,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    name = unique("undeployed-").lower()
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    copy_shipped("alert-triage", definitions, name)
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(definitions))
    with TestClient(create_app(timeout=60, journal=f"sqlite:///{tmp_path / 'j.db'}")) as client:
        accepted = client.post("/pipeline", params={"definition": name}, json=alertmanager(unique("Orphan")))
        assert accepted.status_code == 202
        failed = wait_for_delivery(client, accepted.json()["delivery_id"], "failed")
        assert client.get("/healthz").json()["journal_backlog"] == 0
        assert client.get(f"/deliveries/{uuid.uuid4()}").status_code == 404
    assert failed["flow_run_id"] is None
    assert f"run-pipeline/{name}" in failed["error"] and "pipeline serve" in failed["error"]


def test_a_receiver_without_a_journal_has_no_deliveries(deployments):  # noqa: F811
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    with TestClient(create_app(timeout=60)) as client:
        response = client.get(f"/deliveries/{uuid.uuid4()}")
    assert response.status_code == 404 and "--journal" in response.json()["error"]


def test_a_full_journal_answers_503_so_the_sender_retries(tmp_path):
    from deployments.receiver.http import ReceiverError
    from deployments.receiver.journal import Journal

    async def scenario() -> ReceiverError:
        journal = Journal(f"sqlite:///{tmp_path / 'j.db'}", capacity=2)
        writer = asyncio.create_task(journal.run_writer())
        try:
            for i in range(2):
                await journal.append(f"key-{i}", "alert-triage", {"trace_id": f"t{i}"})
            with pytest.raises(ReceiverError) as refused:
                await journal.append("key-2", "alert-triage", {"trace_id": "t2"})
            repeat = await journal.append("key-0", "alert-triage", {"trace_id": "other"})
        finally:
            writer.cancel()
        assert repeat.duplicate and repeat.trace_id == "t0"
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status == 503 and refused.headers == {"Retry-After": "30"}
    assert "holds 2 alerts still waiting" in refused.message


@pytest.mark.postgres
def test_receivers_sharing_a_postgresql_journal_keep_one_entry_per_key_and_never_claim_twice(postgres_url):
    """Two receivers take the same 200 deliveries at once: 200 entries; their claims are disjoint."""
    from deployments.receiver.journal import Journal

    keys = [f"shared-{i}" for i in range(200)]
    entries: dict[str, list] = {"a": [], "b": []}

    def receiver(name: str) -> None:
        async def take_all() -> None:
            journal = Journal(postgres_url)
            writer = asyncio.create_task(journal.run_writer())
            try:
                results = await asyncio.gather(
                    *(journal.append(key, "alert-triage", {"trace_id": f"{name}-{key}"}) for key in keys)
                )
            finally:
                writer.cancel()
            entries[name] = results

        asyncio.run(take_all())

    threads = [threading.Thread(target=receiver, args=(name,)) for name in entries]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    a, b = entries["a"], entries["b"]
    assert len(a) == len(b) == 200
    assert [x.id for x in a] == [y.id for y in b]  # both were answered with the one entry per key
    assert all(x.duplicate != y.duplicate for x, y in zip(a, b, strict=True))

    journal = Journal(postgres_url)
    assert journal.backlog() == 200
    claims: dict[str, list] = {}

    def claim(name: str) -> None:
        claims[name] = [c.key for batch in iter(lambda: journal.claim(7), []) for c in batch]

    threads = [threading.Thread(target=claim, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(claims["a"] + claims["b"]) == sorted(keys)  # every entry once, none twice


def test_a_journal_that_cannot_be_opened_is_a_clear_error_not_a_traceback(
    free_port_url="http://127.0.0.1:9/api",
):
    import os
    import subprocess
    import sys

    env = {
        **os.environ,
        "OPSFLOW_DATABASE_URL": "postgresql://nobody:s3cretpw@127.0.0.1:1/journal",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",  # never reached
    }
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "receiver", "--journal"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Cannot open the receiver journal: incident store (postgresql")
    assert "Connection refused" in done.stderr
    assert "Traceback" not in done.stderr and "s3cretpw" not in done.stderr
