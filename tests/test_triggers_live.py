"""Triggers for real, on a `prefect server start` with its services: an event matching a definition's
trigger starts a run that `pipeline serve` completes, and `pipeline serve` registers the shipped
deployments exactly as `prefect deploy --all` registers them from the generated prefect.yaml.
The server's log is checked for tracebacks, as a failing trigger or action service only logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import pytest
from pytest_httpserver import HTTPServer
from support.prefect_server import BIN, PrefectServer
from support.waiting import wait_for
from test_deploy import ROOT

pytestmark = pytest.mark.timeout(400)

PYTHON = sys.executable


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("triggers") / "server-home"
    running = PrefectServer(home, env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"}).start()
    try:
        yield running
    finally:
        running.stop()
    running.assert_clean_log()


def client_env(server: PrefectServer, home) -> dict[str, str]:
    env = {k: v for k, v in server.env.items() if k != "OPSFLOW_DEFINITIONS_DIR"}
    env.update(PREFECT_API_URL=server.api_url, PREFECT_HOME=str(home))
    return env


def emit(env: dict[str, str], alertname: str) -> None:
    """`opsflow.alert.firing` about one alert, emitted as the receiver emits it, from another process."""
    resource = {
        "prefect.resource.id": f"opsflow.alert.fp{uuid.uuid4().hex[:12]}",
        "prefect.resource.name": alertname,
    }
    code = (
        "import json, sys\n"
        "from prefect.events import emit_event\n"
        "from flows.history import flush_client_queues\n"
        "assert emit_event(event='opsflow.alert.firing', resource=json.loads(sys.argv[1])) is not None\n"
        "flush_client_queues()\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", code, json.dumps(resource)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_matching_event_starts_a_run_that_pipeline_serve_completes(
    server, httpserver: HTTPServer, tmp_path
):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    name = f"disk-watch-{uuid.uuid4().hex[:6]}"
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    definition = {
        "name": name,
        "version": "1.0",
        "parameters": {"alertname": {"type": "string", "required": True}},
        "triggers": [
            {
                "event": "opsflow.alert.firing",
                "match": {"prefect.resource.name": "Disk*"},  # the alertname, as the receiver names it
                "parameters": {"alertname": "{{ event.resource.name }}"},
            }
        ],
        "nodes": [
            {
                "id": "tell",
                "type": "notify",
                "config": {
                    "driver": "webhook",
                    "url": httpserver.url_for("/hook"),
                    "title": "{{ payload.alertname }} via {{ run.source }}",
                },
            }
        ],
    }
    (definitions / f"{name}.json").write_text(json.dumps(definition))
    env = {**client_env(server, tmp_path / "client-home"), "OPSFLOW_DEFINITIONS_DIR": str(definitions)}
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "w") as log:
        serve = subprocess.Popen(
            [str(BIN / "pipeline"), "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with SyncPrefectClient(server.api_url) as client:

            def automation():
                assert serve.poll() is None, serve_log.read_text()[-3000:]
                return client.read_automations_by_name(f"run-pipeline/{name} trigger 1: opsflow.alert.firing")

            [registered] = wait_for(
                automation, 120, "pipeline serve to register the event trigger", every=0.5
            )
            deployment = client.read_deployment_by_name(f"run-pipeline/{name}")
            assert registered.actions[0].deployment_id == deployment.id

            def runs():
                return client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
                )

            # the trigger service may load a new automation a moment after it is created: an event
            # that came before is not matched, so the pair is sent again (bounded) until a run exists
            for _ in range(12):
                emit(env, "CpuHigh")  # matches no trigger
                emit(env, "DiskFull")
                try:
                    wait_for(runs, 10, "a flow run of the triggered deployment", every=0.5)
                    break
                except AssertionError:
                    continue

            def completed():
                return [run for run in runs() if run.state and run.state.is_completed()]

            done = wait_for(completed, 120, "pipeline serve to complete the triggered run", every=0.5)
            started = runs()
        assert all(run.parameters["payload"] == {"alertname": "DiskFull"} for run in started), [
            run.parameters for run in started
        ]
        assert done[0].parameters["source"] == "event" and done[0].parameters["definition"] == name
        assert json.loads(httpserver.log[0][0].data)["title"] == "DiskFull via event"
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)


def registration(client, name: str) -> dict:
    """What a person sees of a deployment: description, parameters, run form, schedules, triggers."""
    deployment = client.read_deployment_by_name(f"run-pipeline/{name}")
    automations = client.read_resource_related_automations(f"prefect.deployment.{deployment.id}")
    return {
        "id": deployment.id,
        "description": deployment.description,
        "parameters": deployment.parameters,
        "schema": deployment.parameter_openapi_schema,
        "schedules": sorted(
            (str(s.schedule.model_dump()), s.active, json.dumps(s.parameters, sort_keys=True))
            for s in deployment.schedules
        ),
        "triggers": sorted((a.name, str(a.trigger), str(a.actions)) for a in automations),
    }


def test_pipeline_serve_registers_what_prefect_deploy_registers_from_prefect_yaml(server, tmp_path):
    from prefect.client.orchestration import SyncPrefectClient

    env = client_env(server, tmp_path / "client-home")

    def run(*command: str) -> str:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
        assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        return done.stdout

    run(
        str(BIN / "prefect"),
        "--no-prompt",
        "work-pool",
        "create",
        "opsflow",
        "--type",
        "process",
        "--overwrite",
    )
    run(str(BIN / "prefect"), "--no-prompt", "deploy", "--all")
    names = ("health-check", "alert-triage", "ai-triage")
    with SyncPrefectClient(server.api_url) as client:
        deployed = {name: registration(client, name) for name in names}
    registered = run(
        PYTHON,
        "-c",
        "import asyncio\nfrom deployments.serve import register_deployments\n"
        "print(sorted(asyncio.run(register_deployments()).values()))",
    )
    assert registered.strip() == str(sorted(names))
    with SyncPrefectClient(server.api_url) as client:
        served = {name: registration(client, name) for name in names}
    assert served == deployed
    health = served["health-check"]
    assert health["parameters"] == {"definition": "health-check"}
    assert health["description"].startswith("Scheduled host health check")
    [(schedule, active, parameters)] = health["schedules"]
    assert "*/5 * * * *" in schedule and active and json.loads(parameters) == {"source": "schedule"}
