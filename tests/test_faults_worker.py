"""A worker killed mid-run: the run ends Crashed, the incident store stays whole, a re-run completes.

Real parts: `prefect server start` with its services, the shipped prefect.yaml deployed
with `prefect deploy --all`, the crash automation of deployments/crashed-runs.json, a
process worker whose flow run is SIGKILLed with it (as a machine dies), and the incident
store on the machine's PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from support.databases import fresh_postgres_database
from support.prefect_server import PrefectServer
from test_deploy import BIN, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(420)]

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"
CRASH_AFTER_SECONDS = 40  # Prefect's heartbeat is every 30 s at the least


class Target:
    """A loopback HTTP server: `/slow` holds a request until released, `/hook` records notifications."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.slow_hits = 0
        self.hooks: list[dict] = []
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                target.slow_hits += 1
                target.release.wait(timeout=110)
                self._answer()

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                target.hooks.append(json.loads(self.rfile.read(length) or b"{}"))
                self._answer()

            def _answer(self) -> None:
                with contextlib.suppress(OSError):  # the killed run's connection is gone
                    self.send_response(200)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def definition(url: str) -> dict:
    """alert-triage as the deployment runs it: ingest, then a node that waits on `/slow`, then notify."""
    return {
        "name": "alert-triage",
        "version": "1.0",
        "nodes": [
            {"id": "ingest", "type": "ingest", "config": {"driver": "auto"}, "next": "wait"},
            {
                "id": "wait",
                "type": "check",
                "timeout_seconds": 115,
                "config": {"http": [{"url": f"{url}/slow", "timeout": 110}]},
                "next": "tell",
            },
            {"id": "tell", "type": "notify", "config": {"driver": "webhook", "url": f"{url}/hook"}},
        ],
    }


def descendants_sessions(pid: int) -> set[int]:
    """Session ids of `pid` and of its children: Prefect starts each flow run in a session of its own."""
    sessions = {os.getsid(pid)}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:  # ppid
                sessions.add(int(fields[3]))  # session id
    return sessions


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


@pytest.fixture
def server(tmp_path, postgres_admin_url):
    """Prefect's server on PostgreSQL, as the README asks for workers with the crash automation.

    On SQLite Prefect's trigger service, evaluating that automation, holds the database
    for up to a minute and logs "database is locked" (README, "Crashed runs").
    """
    with fresh_postgres_database(postgres_admin_url) as database_url:
        prefect = PrefectServer(tmp_path / "prefect-home", database_url)
        prefect.start()
        try:
            yield prefect
        finally:
            prefect.stop()
        prefect.assert_clean_log()


def test_a_worker_killed_mid_run_leaves_a_crashed_run_whole_incidents_and_a_rerun_completes(
    server, postgres_url, tmp_path
):
    from prefect.client.orchestration import SyncPrefectClient, get_client

    from deployments.crashes import ensure_crash_automation
    from nodes.incidents import store

    target = Target()
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / "alert-triage.json").write_text(json.dumps(definition(target.url)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update(
        PREFECT_API_URL=server.api_url,
        PREFECT_HOME=str(tmp_path / "client-home"),
        OPSFLOW_DEFINITIONS_DIR=str(definitions),
        OPSFLOW_DATABASE_URL=postgres_url,
        PREFECT_WORKER_QUERY_SECONDS="1",
    )

    def prefect(*args: str) -> None:
        done = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, (
            f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )

    async def automate() -> str:
        async with get_client() as client:
            return await ensure_crash_automation(client, within=CRASH_AFTER_SECONDS)

    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        assert asyncio.run(automate()) == "created"
        assert asyncio.run(automate()) == "present"  # `pipeline serve` runs it at every start
    prefect("work-pool", "create", "opsflow", "--type", "process", "--overwrite")
    prefect("deploy", "--all")

    def start_worker(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "w") as log:
            return subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", "opsflow", "--name", name],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    payload = json.loads((INBOUND / "alertmanager-firing-group.json").read_text())
    payload["groupKey"] = f"crash-{uuid.uuid4().hex}"
    with SyncPrefectClient(server.api_url) as client:
        deployment = client.read_deployment_by_name("run-pipeline/alert-triage")

        def new_run():
            return client.create_flow_run_from_deployment(
                deployment.id, parameters={"definition": "alert-triage", "payload": payload}
            ).id

        def state_of(run_id):
            return client.read_flow_run(run_id).state

        worker = start_worker("doomed")
        try:
            first = new_run()
            wait_until(lambda: target.slow_hits, 180, "the run to reach its slow node")
            assert state_of(first).is_running()
            killed_at = time.monotonic()
            for session in descendants_sessions(worker.pid):  # the worker and its flow run process
                os.killpg(session, signal.SIGKILL)
            worker.wait(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
        crashed = wait_until(
            lambda: (s := state_of(first)).is_crashed() and s, CRASH_AFTER_SECONDS + 60, "Crashed"
        )
        crash_seconds = time.monotonic() - killed_at
        assert "heartbeat" in (crashed.message or "")

        # the store holds what the dead run ingested, whole: one incident and all its alerts
        incidents = store.list_incidents(limit=100, database_url=postgres_url)
        assert len(incidents) == 1, incidents
        stored = store.get_incident(incidents[0]["id"], database_url=postgres_url)
        assert len(stored["alerts"]) == len(payload["alerts"]) and stored["status"] == "open"

        target.release.set()  # the slow node answers now
        worker = start_worker("replacement")
        try:
            second = new_run()
            done = wait_until(lambda: (s := state_of(second)).is_final() and s, 240, "the re-run to finish")
        finally:
            stop_worker(worker)
    assert done.is_completed(), (done, (tmp_path / "replacement.log").read_text()[-3000:])
    assert state_of_final(server.api_url, first).is_crashed()  # nothing revived the dead run
    incidents = store.list_incidents(limit=100, database_url=postgres_url)
    again = store.get_incident(incidents[0]["id"], database_url=postgres_url)
    assert len(incidents) == 1 and len(again["alerts"]) == len(payload["alerts"])
    assert all(alert["receive_count"] == 2 for alert in again["alerts"])  # the re-run saw it again
    print(f"\nrun Crashed {crash_seconds:.0f} s after the kill (window {CRASH_AFTER_SECONDS} s)")


def stop_worker(worker: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL when a loaded machine keeps the worker from exiting within 30 s."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)


def state_of_final(api_url: str, run_id):
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        return client.read_flow_run(run_id).state
