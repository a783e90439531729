"""Prefect killed and restarted during an alert burst: nothing accepted is lost, each alert runs once.

A real `prefect server start` on a fresh PostgreSQL database, the receiver in its own
process, and a sender that behaves like Alertmanager (retries 5xx and connection
errors with back-off). The server is SIGKILLed in the middle of the burst and started
again on the same port and database.
"""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
from support.ports import free_port
from support.prefect_server import PrefectServer, wait_healthy
from test_deploy import ROOT
from test_receiver import alertmanager

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SENDERS = 48  # deliveries in flight at once, as from many Alertmanager groups


@pytest.fixture
def prefect_server(postgres_url, tmp_path):
    server = PrefectServer(tmp_path / "prefect-home", postgres_url, services=False)
    server.start()
    try:
        from prefect.settings import PREFECT_API_URL, temporary_settings

        from flows.pipeline import run_pipeline

        async def deploy() -> str:
            deployment = await run_pipeline.to_deployment(
                name="alert-triage", parameters={"definition": "alert-triage"}
            )
            return str(await deployment.apply())

        with temporary_settings({PREFECT_API_URL: server.api_url}):
            server.deployment_id = asyncio.run(deploy())
        yield server
    finally:
        server.stop()
    server.assert_clean_log()


def start_receiver(api_url: str, tmp_path: Path, journal: bool) -> tuple[subprocess.Popen, str]:
    """The receiver as its own process, as `pipeline receiver` runs it."""
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": api_url, "OPSFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'j.db'}"}
    env.pop("OPSFLOW_RECEIVER_TOKEN", None)
    code = (
        "import uvicorn; from deployments.receiver.app import create_app; "
        f"uvicorn.run(create_app(timeout=5, concurrency=8, journal={journal}), host='127.0.0.1', "
        f"port={port}, log_level='error')"
    )
    with open(tmp_path / "receiver.log", "w") as log:  # the child has its own copy of the descriptor
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, 60, path="/healthz")
    return process, url


async def send_all(url: str, payloads: list[dict], server: PrefectServer, kill_after: int) -> dict:
    """Deliver every payload, retrying like Alertmanager; kill and restart Prefect mid-burst."""
    answers: collections.Counter[int] = collections.Counter()
    accepted: dict[int, list[dict]] = collections.defaultdict(list)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(payloads)):
        queue.put_nowait(i)
    killed = asyncio.Event()
    outage: dict[str, float] = {}

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            delay = 0.2
            while True:
                try:
                    response = await client.post("/pipeline", json=payloads[i])
                    status = response.status_code
                except httpx.TransportError:
                    status = 0
                answers[status] += 1
                if status == 202:
                    accepted[i].append(response.json())
                    break
                if status not in (0, 503):
                    raise AssertionError(f"alert {i}: HTTP {status} {response.text}")
                await asyncio.sleep(delay)
                delay = min(3.0, delay * 2)
            if sum(len(v) for v in accepted.values()) >= kill_after and not killed.is_set():
                killed.set()

    async def chaos(client: httpx.AsyncClient) -> None:
        await killed.wait()
        outage["killed_at_accepted"] = sum(len(v) for v in accepted.values())
        outage["journal_backlog"] = (await client.get("/healthz")).json().get("journal_backlog")
        await asyncio.to_thread(server.kill)
        started = time.monotonic()
        await asyncio.sleep(2)
        await asyncio.to_thread(server.start)
        outage["seconds"] = time.monotonic() - started

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        chaos_task = asyncio.create_task(chaos(client))
        await asyncio.gather(*(sender(client) for _ in range(SENDERS)))
        await chaos_task
    return {"answers": answers, "accepted": accepted, "outage": outage}


def prefect_runs(api_url: str, deployment_id: str, ids: set[str]) -> tuple[int, dict[str, str]]:
    """How many runs the deployment has in Prefect, and the alert name of each of `ids` that exists."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterId,
    )

    found: dict[str, str] = {}
    ordered = sorted(ids)
    with SyncPrefectClient(api_url) as client:
        total = client.count_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[uuid.UUID(deployment_id)]))
        )
        for start in range(0, len(ordered), 200):
            chunk = [uuid.UUID(i) for i in ordered[start : start + 200]]
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=chunk)), limit=200
            )
            found.update({str(run.id): run.parameters["payload"]["groupLabels"]["alertname"] for run in runs})
    return total, found


def wait_for_journal(url: str, accepted: dict[int, list[dict]], timeout: float) -> dict[int, str]:
    """Each journaled alert's flow run id, once the dispatcher has created them all."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{url}/healthz", timeout=30).json()["journal_backlog"] and time.monotonic() < deadline:
        time.sleep(1)
    runs = {}
    with httpx.Client(base_url=url, timeout=30) as client:
        for i, answers in accepted.items():
            delivery = client.get(f"/deliveries/{answers[0]['delivery_id']}").json()
            assert delivery["status"] == "created", delivery
            runs[i] = delivery["flow_run_id"]
    return runs


@pytest.mark.timeout(600)
@pytest.mark.parametrize(("journal", "alerts"), [(False, 2000), (True, 500)], ids=["direct", "journal"])
def test_prefect_killed_mid_burst_loses_no_alert_and_runs_each_once(
    prefect_server, tmp_path, journal, alerts
):
    payloads = [alertmanager(f"Burst{uuid.uuid4().hex[:12]}") for _ in range(alerts)]
    receiver, url = start_receiver(prefect_server.api_url, tmp_path, journal)
    try:
        outcome = asyncio.run(send_all(url, payloads, prefect_server, kill_after=alerts // 5))
        if journal:
            run_of = wait_for_journal(url, outcome["accepted"], timeout=400)
        else:
            run_of = {i: answers[0]["flow_run_id"] for i, answers in outcome["accepted"].items()}
    finally:
        receiver.terminate()
        receiver.wait(timeout=20)
    answers, accepted = outcome["answers"], outcome["accepted"]
    report = f"answers {dict(answers)}, outage {outcome['outage']}"
    # every alert ended accepted, once: the sender stops at its 202
    assert sorted(accepted) == list(range(alerts)), report
    assert all(len(a) == 1 for a in accepted.values()), report
    assert outcome["outage"]["killed_at_accepted"] < alerts, report
    if journal:  # nothing refused, though Prefect died with journaled alerts still to create
        assert answers == {202: alerts} and outcome["outage"]["journal_backlog"] > 0, report
    else:  # the kill cut into the burst: refusals happened, only as 503 or a dropped connection
        assert set(answers) <= {0, 202, 503} and answers[503] + answers[0] > 0, report
    # every accepted alert has its flow run, a different one per alert, and Prefect holds no other
    total, found = prefect_runs(prefect_server.api_url, prefect_server.deployment_id, set(run_of.values()))
    assert len(set(run_of.values())) == alerts, report
    lost = set(run_of.values()) - set(found)
    assert not lost, f"{len(lost)} accepted alerts have no flow run; {report}"
    assert total == alerts, f"{total} runs for {alerts} alerts; {report}"
    for i, payload in enumerate(payloads):  # and each is the run of its own alert
        assert found[run_of[i]] == payload["groupLabels"]["alertname"]
    print(f"\n{alerts} alerts ({'journal' if journal else 'direct'}): {report}, {total} runs in Prefect")
