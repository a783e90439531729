"""Deployments for real: `pipeline serve`'s in-process runner, and prefect.yaml with a worker
against a `prefect server start` (SQLite, and PostgreSQL when the machine has it)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from support.prefect_server import PrefectServer
from support.serving import served_in_process

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

    with served_in_process([name]) as registered:
        assert list(registered.values()) == [name]
        flow_run = run_deployment(f"run-pipeline/{name}", timeout=120, poll_interval=0.2)
    assert flow_run.state.is_completed(), flow_run.state
    assert flow_run.name.startswith(f"{name}-")
    (request, _), *_ = httpserver.log
    assert json.loads(request.data)["title"] == f"{name} on {socket.gethostname()}"


@pytest.fixture(params=["sqlite", "postgres"])
def real_server(request, tmp_path):
    """`prefect server start` in a subprocess, on SQLite or on a fresh PostgreSQL database."""
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    server = PrefectServer(tmp_path / "server-home", database_url).start()
    try:
        yield server.api_url
    finally:
        server.stop()
    server.assert_clean_log()


def test_prefect_yaml_deploys_and_a_worker_runs_it(real_server, httpserver: HTTPServer, tmp_path):
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    # the shipped deployment names, pointed at a local sink
    (definitions / "health-check.json").write_text(
        json.dumps(sink_definition("health-check", httpserver.url_for("/hook")))
    )
    marks = tmp_path / "marks"
    marks.mkdir()
    (definitions / "alert-triage.json").write_text(json.dumps(stages_definition("alert-triage", marks)))
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
            completed = completed_runs_once_settled(client, deployment.id)
        assert flow_run.state.is_completed(), (flow_run.state, (tmp_path / "worker.log").read_text()[-3000:])
        assert [s.schedule.cron for s in deployment.schedules] == ["*/5 * * * *"]
        assert deployment.schedules[0].parameters == {"source": "schedule"}  # generated from the definition
        # the scheduler runs health-check on every 5-minute mark too: one notification per completed run
        assert flow_run.id in completed and len(httpserver.log) == len(completed)
        retried_through_the_worker(prefect, real_server, marks, tmp_path / "worker.log")
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
        worker_log.close()


def stages_definition(name: str, marks: Path) -> dict:
    """build → ship; each stage leaves a mark per run of it, and ship fails until `marks/fixed` exists."""

    def stage(node_id: str, code: str, **fields) -> dict:
        mark = f"open({str(marks / node_id)!r}, 'a').write('x')"
        return {
            "id": node_id,
            "type": "command",
            "retries": 0,
            "config": {"command": ["python3", "-c", f"{mark}; {code}"]},
            **fields,
        }

    fixed = str(marks / "fixed")
    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            stage("build", "pass", next="ship"),
            stage("ship", f"import os, sys; sys.exit(0 if os.path.exists({fixed!r}) else 3)"),
        ],
    }


def retried_through_the_worker(prefect, api_url: str, marks: Path, worker_log: Path) -> None:
    """A failed run of a worker's deployment, retried as the UI's Retry does, runs again on the
    worker as the same flow run, without its completed stage (issue 19: "through a worker")."""
    from prefect.client.orchestration import SyncPrefectClient

    def final(run_id: uuid.UUID, attempt: int):
        with SyncPrefectClient(api_url) as client:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                flow_run = client.read_flow_run(run_id)
                if flow_run.run_count >= attempt and flow_run.state and flow_run.state.is_final():
                    return flow_run
                time.sleep(1)
        raise AssertionError(f"attempt {attempt} of {run_id} did not end: {worker_log.read_text()[-3000:]}")

    started = prefect("deployment", "run", "run-pipeline/alert-triage")
    run_id = uuid.UUID(next(line.split()[-1] for line in started.stdout.splitlines() if "UUID" in line))
    failed = final(run_id, 1)
    assert failed.state.is_failed() and "exit code 3" in failed.state.message, failed.state
    (marks / "fixed").touch()
    retry = subprocess.run(
        [str(BIN / "pipeline"), "retry", str(run_id)],
        cwd=ROOT,
        env={**os.environ, "PREFECT_API_URL": api_url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert retry.returncode == 0, retry.stderr[-2000:]
    done = final(run_id, 2)
    assert done.state.is_completed(), (done.state, worker_log.read_text()[-3000:])
    assert (marks / "build").read_text() == "x" and (marks / "ship").read_text() == "xx"


def completed_runs_once_settled(client, deployment_id, timeout: float = 120) -> set:
    """Ids of the deployment's completed runs, once none is pending or running (bounded)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    while True:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
        busy = [r for r in runs if r.state and (r.state.is_pending() or r.state.is_running())]
        if not busy or time.monotonic() > deadline:
            return {r.id for r in runs if r.state and r.state.is_completed()}
        time.sleep(1)
