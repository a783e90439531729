"""Deployments for real: `pipeline serve`'s in-process runner, and prefect.yaml with a worker
against a `prefect server start` (SQLite, and PostgreSQL when the machine has it)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(400)


def sink_definition(name: str, url: str) -> dict:
    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            {"id": "metrics", "type": "context", "config": {"include": ["memory"]}, "next": "tell"},
            {
                "id": "tell",
                "type": "notify",
                "config": {
                    "driver": "webhook",
                    "url": url,
                    "title": "{{ run.definition }} on {{ nodes.metrics.hostname }}",
                },
            },
        ],
    }


def test_serve_claims_and_runs_deployment_runs_in_process(
    prefect_api, httpserver: HTTPServer, tmp_path, monkeypatch
):
    name = f"serve-{uuid.uuid4().hex[:8]}"
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    (tmp_path / f"{name}.json").write_text(json.dumps(sink_definition(name, httpserver.url_for("/hook"))))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    from prefect.deployments import run_deployment

    from deployments.serve import PipelineServer, register_deployments

    loop = asyncio.new_event_loop()
    registered = loop.run_until_complete(register_deployments([name]))
    assert list(registered.values()) == [name]
    server = PipelineServer(list(registered), poll_seconds=0.2)
    thread = threading.Thread(target=loop.run_until_complete, args=(server.run(),), daemon=True)
    thread.start()
    try:
        flow_run = run_deployment(f"run-pipeline/{name}", timeout=120, poll_interval=0.2)
    finally:
        loop.call_soon_threadsafe(server.stopping.set)
        thread.join(timeout=60)
    assert flow_run.state.is_completed(), flow_run.state
    assert flow_run.name.startswith(f"{name}-")
    (request, _), *_ = httpserver.log
    assert json.loads(request.data)["title"] == f"{name} on {socket.gethostname()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "prefect server exited early"
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"prefect server did not answer at {url}")


@pytest.fixture(params=["sqlite", "postgres"])
def real_server(request, tmp_path):
    """`prefect server start` in a subprocess, on SQLite or on a fresh PostgreSQL database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update(
        PREFECT_HOME=str(tmp_path / "server-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
    )
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")  # skips (or fails in CI) without PostgreSQL
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = url.replace("+psycopg", "+asyncpg")
    port = _free_port()
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    api = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(api, process)
        yield api
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_prefect_yaml_deploys_and_a_worker_runs_it(real_server, httpserver: HTTPServer, tmp_path):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    # the shipped deployment names, pointed at a local sink
    (definitions / "health-check.json").write_text(
        json.dumps(sink_definition("health-check", httpserver.url_for("/hook")))
    )
    env = {k: v for k, v in os.environ.items()}
    env.update(
        PREFECT_API_URL=real_server,
        PREFECT_HOME=str(tmp_path / "client-home"),
        OPSFLOW_DEFINITIONS_DIR=str(definitions),
        PREFECT_WORKER_QUERY_SECONDS="1",
    )

    def prefect(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, (
            f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
        return done

    prefect("work-pool", "create", "opsflow", "--type", "process", "--overwrite")
    deployed = prefect("deploy", "--all")
    for name in ("health-check", "alert-triage", "ai-triage"):
        assert f"run-pipeline/{name}" in deployed.stdout
    worker_log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed below
    worker = subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "opsflow", "--limit", "2"],
        cwd=ROOT,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    try:
        started = prefect("deployment", "run", "run-pipeline/health-check")
        run_id = next(line.split()[-1] for line in started.stdout.splitlines() if "UUID" in line)
        from prefect.client.orchestration import SyncPrefectClient

        with SyncPrefectClient(real_server) as client:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(uuid.UUID(run_id))
                if flow_run.state and flow_run.state.is_final():
                    break
                time.sleep(1)
            deployment = client.read_deployment_by_name("run-pipeline/health-check")
        assert flow_run.state.is_completed(), (flow_run.state, (tmp_path / "worker.log").read_text()[-3000:])
        assert [s.schedule.cron for s in deployment.schedules] == ["*/5 * * * *"]
        assert len(httpserver.log) == 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker_log.close()
