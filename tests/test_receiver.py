"""The alert receiver against the session's real Prefect server, through a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest
from support.ports import free_port

pytestmark = pytest.mark.timeout(180)

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"
FIXTURES = sorted(p.name for p in INBOUND.glob("*.json"))
TOKEN = "receiver-t0ken-5b7c9e1f"


def alertmanager(name: str, status: str = "firing", starts: str = "2024-05-01T10:00:00Z") -> dict:
    """A one-alert Alertmanager group whose fingerprint is unique to `name`."""
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "receiver": "opsflow",
        "status": status,
        "groupLabels": {"alertname": name},
        "alerts": [
            {
                "status": status,
                "labels": {"alertname": name, "severity": "critical", "instance": "db-01"},
                "annotations": {"summary": f"{name} on db-01"},
                "startsAt": starts,
                "endsAt": "2024-05-01T11:00:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                "fingerprint": f"fp{uuid.uuid5(uuid.NAMESPACE_DNS, name).hex[:14]}",
            }
        ],
    }


def unique(prefix: str = "Receiver") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def copy_shipped(shipped: str, directory: Path, name: str) -> Path:
    """A shipped definition under another name (a webhook one, such as alert-triage, for the routes)."""
    raw = json.loads((Path(__file__).resolve().parent.parent / "definitions" / f"{shipped}.json").read_text())
    path = directory / f"{name}.json"
    path.write_text(json.dumps({**raw, "name": name}))
    return path


class ThreadedServer:
    """A uvicorn server for `app` in a thread, on a free loopback port."""

    def __init__(self, app) -> None:
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class Proxy:
    """A TCP forwarder on a fixed loopback port: a Prefect API that can go away and come back."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port, self.upstream = port, upstream
        self.listener: socket.socket | None = None

    def start(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self.listener,), daemon=True).start()

    def stop(self) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


async def _deploy(names: list[str]) -> dict[str, str]:
    from flows.pipeline import run_pipeline

    ids = {}
    for name in names:
        deployment = await run_pipeline.to_deployment(name=name, parameters={"definition": name})
        ids[name] = str(await deployment.apply())
    return ids


@pytest.fixture(scope="module")
def deployments(prefect_api) -> dict[str, str]:
    """Deployments of the shipped alert-triage, ai-triage and health-check definitions: name → id."""
    return asyncio.run(_deploy(["alert-triage", "ai-triage", "health-check"]))


@pytest.fixture(scope="module")
def receiver(deployments) -> str:
    """The receiver's base URL (no token configured)."""
    from deployments.receiver.app import create_app

    # a generous bound: a loaded test machine must not turn into 503s here
    with ThreadedServer(create_app(timeout=60)) as server:
        yield server.url


@pytest.fixture
def http(receiver):
    with httpx.Client(base_url=receiver, timeout=30) as client:
        yield client


def prefect():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def read_run(flow_run_id: str):
    with prefect() as client:
        return client.read_flow_run(uuid.UUID(flow_run_id))


def runs_with_alertname(deployment_id: str, alertname: str) -> list:
    """Flow runs of the deployment whose payload carries this (unique) alert name."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with prefect() as client:
        runs = client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[uuid.UUID(deployment_id)])),
            limit=200,
        )
    return [r for r in runs if alertname in json.dumps(r.parameters.get("payload"))]


@pytest.mark.parametrize("fixture", FIXTURES)
def test_inbound_payloads_become_flow_runs_with_the_alert(http, fixture):
    body = (INBOUND / fixture).read_text()
    response = http.post("/pipeline", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 202, response.text
    answer = response.json()
    assert answer["definition"] == "alert-triage"
    flow_run = read_run(answer["flow_run_id"])
    assert flow_run.state.is_scheduled()
    params = flow_run.parameters
    assert params["definition"] == "alert-triage"
    assert params["payload"] == json.loads(body)
    assert params["source"] == "receiver"
    assert params["trace_id"] == answer["trace_id"] and len(answer["trace_id"]) == 32
    from nodes.ingest import detect_format

    assert params["alert_format"] == detect_format(json.loads(body))  # ingest takes it, not detects again


def test_redelivery_returns_the_same_run_and_never_starts_a_second(http, deployments):
    name = unique("Redelivered")
    payload = alertmanager(name)
    first = http.post("/pipeline", json=payload)
    assert first.status_code == 202 and first.json()["duplicate"] is False

    reordered = json.loads(json.dumps(payload))
    reordered["alerts"][0]["labels"] = dict(reversed(list(payload["alerts"][0]["labels"].items())))
    with httpx.Client(base_url=str(http.base_url), timeout=30) as other:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(6) as pool:
            again = list(pool.map(lambda p: other.post("/pipeline", json=p), [payload] * 5 + [reordered]))
    assert {r.status_code for r in again} == {202}
    assert {r.json()["flow_run_id"] for r in again} == {first.json()["flow_run_id"]}
    assert all(r.json()["duplicate"] for r in again)
    assert all(r.json()["trace_id"] == first.json()["trace_id"] for r in again)
    assert len(runs_with_alertname(deployments["alert-triage"], name)) == 1


def test_a_new_status_or_a_new_episode_is_a_new_run(http, deployments):
    name = unique("Episodes")
    fired = http.post("/pipeline", json=alertmanager(name)).json()["flow_run_id"]
    resolved = http.post("/pipeline", json=alertmanager(name, "resolved")).json()["flow_run_id"]
    refired = http.post("/pipeline", json=alertmanager(name, starts="2024-05-01T12:00:00Z")).json()
    assert len({fired, resolved, refired["flow_run_id"]}) == 3
    assert len(runs_with_alertname(deployments["alert-triage"], name)) == 3
    # the same alert to another definition is that definition's run, not a duplicate
    other = http.post("/pipeline", params={"definition": "ai-triage"}, json=alertmanager(name))
    assert other.status_code == 202 and other.json()["flow_run_id"] not in {fired, resolved}
    assert read_run(other.json()["flow_run_id"]).deployment_id == uuid.UUID(deployments["ai-triage"])


def test_an_unparseable_payload_is_still_accepted_and_deduplicated_by_its_body(http):
    marker = unique()
    first = http.post("/pipeline", json={"something": marker, "b": [1, 2]})
    again = http.post(
        "/pipeline",
        content=f'{{"b": [1, 2], "something": "{marker}"}}'.encode(),
        headers={"content-type": "application/json"},
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["flow_run_id"] == again.json()["flow_run_id"]


def test_alert_events_are_emitted_related_to_the_flow_run(http):
    from prefect.events.filters import EventFilter, EventResourceFilter

    from flows.history import flush_client_queues

    name = unique("Evented")
    payload = alertmanager(name)
    fingerprint = payload["alerts"][0]["fingerprint"]
    run_id = http.post("/pipeline", json=payload).json()["flow_run_id"]
    resolved_id = http.post("/pipeline", json=alertmanager(name, "resolved")).json()["flow_run_id"]
    flush_client_queues()
    wanted = EventFilter(resource=EventResourceFilter(id=[f"opsflow.alert.{fingerprint}"]))
    deadline = time.monotonic() + 30
    with prefect() as client:
        while True:  # the server records events in the background
            events = client.read_events(filter=wanted, limit=50).events
            if len(events) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    by_name = {e.event: e for e in events}
    assert set(by_name) == {"opsflow.alert.firing", "opsflow.alert.resolved"}
    firing = by_name["opsflow.alert.firing"]
    assert firing.resource.name == name
    assert firing.payload["definition"] == "alert-triage"
    assert firing.payload["severity"] == "critical"
    assert firing.payload["labels"]["instance"] == "db-01"
    related = {(r.id, r.role) for r in firing.related}
    assert (f"prefect.flow-run.{run_id}", "flow-run") in related
    assert (f"prefect.flow-run.{resolved_id}", "flow-run") in {
        (r.id, r.role) for r in by_name["opsflow.alert.resolved"].related
    }


def test_pagerduty_raw_request_is_passed_through_for_signature_checks(http):
    original = (INBOUND / "pagerduty-v3-incident-triggered.json").read_text()
    incident = json.loads(original)["event"]["data"]["id"]
    body = original.replace(incident, unique("P"))  # a new incident: not a re-delivery
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "X-PagerDuty-Signature": "v1=abc123",
        "X-Other": "not passed",
    }
    answer = http.post("/pipeline", content=body.encode(), headers=headers).json()
    parameters = read_run(answer["flow_run_id"]).parameters
    assert "_opsflow_http" not in parameters["payload"]  # the raw request is its own parameter
    assert parameters["http"] == {
        "headers": {"x-pagerduty-signature": "v1=abc123", "content-type": "application/json; charset=utf-8"},
        "raw_body": body,
    }
    # a sender cannot supply its own "raw request"
    forged = {"title": unique("Forged"), "_opsflow_http": {"raw_body": "{}", "headers": {}}}
    answer = http.post("/pipeline", json=forged).json()
    assert "_opsflow_http" not in read_run(answer["flow_run_id"]).parameters["payload"]


def test_execute_passes_every_field_to_the_run(http):
    body = {
        "payload": {"title": unique("Executed"), "severity": "warning"},
        "source": "api-test",
        "trace_id": "trace-0123456789",
        "environment": "staging",
        "incident_id": "42",
    }
    response = http.post("/definitions/alert-triage/execute", json=body)
    assert response.status_code == 202, response.text
    params = read_run(response.json()["flow_run_id"]).parameters
    assert {k: params[k] for k in body} | {"definition": params["definition"]} == body | {
        "definition": "alert-triage"
    }
    # an explicit run without alerts is a new run each time, unless the caller gives a key
    first = http.post("/definitions/ai-triage/execute", json={}).json()["flow_run_id"]
    second = http.post("/definitions/ai-triage/execute", json={}).json()["flow_run_id"]
    assert first != second
    keyed = [
        http.post("/definitions/ai-triage/execute", json={}, headers={"Idempotency-Key": "k-" + first})
        for _ in range(2)
    ]
    assert keyed[0].json()["flow_run_id"] == keyed[1].json()["flow_run_id"] not in {first, second}
    bad = http.post("/definitions/alert-triage/execute", json={"payload": {}, "colour": "red"})
    assert bad.status_code == 400 and "colour" in bad.json()["error"]


def test_client_errors_are_json_and_say_what_is_wrong(http):
    def post(content: bytes, content_type: str | None = "application/json", path: str = "/pipeline"):
        headers = {"content-type": content_type} if content_type else {}
        return http.post(path, content=content, headers=headers)

    bad = post(b'{"alerts": [1, 2,]}')
    assert bad.status_code == 400 and bad.json()["error"].startswith("invalid JSON: ")
    assert "line 1 column" in bad.json()["error"]
    assert post(b"[1, 2]").json() == {
        "error": "the body must be a JSON object (an alert payload), got a list"
    }
    assert post(b'{"value": NaN}').status_code == 400
    assert "UTF-8" in post(b'{"title": "\xff"}').json()["error"]
    assert post(b"").status_code == 400
    assert post(b"[" * 100_000 + b"]" * 100_000).status_code in (400, 413)

    for content_type in ("text/plain", None, "application/x-www-form-urlencoded", "application/jsonx"):
        response = post(b'{"title": "x"}', content_type)
        assert response.status_code == 415, content_type
        assert "Content-Type must be application/json" in response.json()["error"]
    assert post(b'{"title": "typed"}', "application/vnd.opsflow+json; charset=utf-8").status_code == 202

    unknown = http.post("/pipeline", params={"definition": "no-such-definition"}, json={"title": "x"})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "Pipeline definition not found: no-such-definition"}
    for sneaky in ("../definitions/alert-triage", "/etc/passwd", ".hidden", "alert-triage.json"):
        response = http.post("/pipeline", params={"definition": sneaky}, json={"title": "x"})
        assert response.status_code == 404, sneaky
    assert http.get("/definitions/..%2F..%2Fpyproject").status_code == 404
    assert http.get("/nowhere").json() == {"error": "Not Found"}
    assert http.put("/pipeline").status_code == 405 and "error" in http.put("/pipeline").json()


def test_bodies_over_one_mebibyte_are_refused_by_length_and_by_size(http):
    big = b'{"title": "' + b"x" * (1024 * 1024) + b'"}'
    declared = http.post("/pipeline", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "1048576" in declared.json()["error"]

    def chunks():  # no Content-Length: the receiver must count what it reads
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    streamed = http.post("/pipeline", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    # under 1 MiB, but over what the Prefect server stores as run parameters (512 KiB by default)
    just_under = b'{"title": "' + b"x" * (1024 * 1024 - 200) + b'"}'
    refused = http.post("/pipeline", content=just_under, headers={"content-type": "application/json"})
    assert refused.status_code == 413
    assert "524,288 bytes" in refused.json()["error"] and "MAX_PARAMETER_SIZE" in refused.json()["error"]
    large = json.dumps({"title": unique("Large"), "description": "y" * 400_000}).encode()
    ok = http.post("/pipeline", content=large, headers={"content-type": "application/json"})
    assert ok.status_code == 202


def test_a_definition_without_a_deployment_is_a_404_that_says_how_to_create_it(http, tmp_path, monkeypatch):
    name = unique("orphan-").lower()
    copy_shipped("alert-triage", tmp_path, name)
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    response = http.post("/pipeline", params={"definition": name}, json={"title": "x"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert f"run-pipeline/{name}" in error and "pipeline serve" in error and "prefect deploy" in error


def test_a_deployment_deleted_and_recreated_is_found_again_and_a_deleted_one_is_a_404(
    http, tmp_path, monkeypatch
):
    """The receiver keeps deployment ids for a minute: a stale one must not lose the alert."""
    name = unique("redeployed-").lower()
    shutil.copy(
        Path(__file__).resolve().parent.parent / "definitions" / "alert-triage.json",
        tmp_path / f"{name}.json",
    )
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    first_id = asyncio.run(_deploy([name]))[name]
    first = http.post("/pipeline", params={"definition": name}, json=alertmanager(unique("Redeploy")))
    assert first.status_code == 202, first.text
    assert str(read_run(first.json()["flow_run_id"]).deployment_id) == first_id

    with prefect() as client:
        client.delete_deployment(uuid.UUID(first_id))
    second_id = asyncio.run(_deploy([name]))[name]
    assert second_id != first_id
    second = http.post("/pipeline", params={"definition": name}, json=alertmanager(unique("Redeploy")))
    assert second.status_code == 202, second.text
    assert str(read_run(second.json()["flow_run_id"]).deployment_id) == second_id

    with prefect() as client:
        client.delete_deployment(uuid.UUID(second_id))
    gone = http.post("/pipeline", params={"definition": name}, json=alertmanager(unique("Redeploy")))
    assert gone.status_code == 404, gone.text
    assert f"run-pipeline/{name}" in gone.json()["error"]


def test_bearer_token_is_required_when_configured_and_never_echoed(deployments, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    monkeypatch.setenv("OPSFLOW_RECEIVER_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    payload = alertmanager(unique("Authorized"))
    with TestClient(create_app(timeout=60)) as client:
        missing = client.post("/pipeline", json=payload)
        wrong = client.post("/pipeline", json=payload, headers={"Authorization": f"Bearer {TOKEN}x"})
        basic = client.get("/definitions", headers={"Authorization": f"Basic {TOKEN}"})
        right = client.post("/pipeline", json=payload, headers={"Authorization": f"Bearer {TOKEN}"})
        listing = client.get("/definitions", headers={"Authorization": f"Bearer {TOKEN}"})
        health = client.get("/healthz")
    for response in (missing, wrong, basic):
        assert response.status_code == 401
        assert response.json() == {"error": "missing or wrong bearer token"}
        assert response.headers["www-authenticate"] == "Bearer"
    assert right.status_code == 202 and listing.status_code == 200
    assert health.status_code == 200  # probes need no token
    everything = [r.text + json.dumps(dict(r.headers)) for r in (missing, wrong, basic, right, listing)]
    assert not any(TOKEN in text for text in everything)
    assert TOKEN not in caplog.text


def test_prefect_down_is_503_and_a_retry_once_it_is_back_succeeds(deployments, prefect_api):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    upstream = httpx.URL(prefect_api)
    port = free_port()
    proxy = Proxy(port, (upstream.host, upstream.port))
    payload = alertmanager(unique("Outage"))
    with TestClient(create_app(f"http://127.0.0.1:{port}/api", timeout=60)) as client:
        down = client.post("/pipeline", json=payload)
        assert down.status_code == 503
        assert down.json()["error"].startswith("Prefect API unavailable")
        assert down.headers["retry-after"] == "5"
        assert client.get("/healthz").json() == {"status": "unavailable", "prefect": "unreachable"}
        proxy.start()
        try:
            back = client.post("/pipeline", json=payload)
            assert back.status_code == 202, back.text
            assert client.get("/healthz").json() == {"status": "ok", "prefect": "ok"}
        finally:
            proxy.stop()
    assert read_run(back.json()["flow_run_id"]).parameters["payload"] == payload


def test_prefect_errors_and_silence_are_503(deployments, httpserver):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    httpserver.expect_request("/api/deployments/name/run-pipeline/alert-triage").respond_with_json(
        {"detail": "database is locked"}, status=500
    )
    with TestClient(create_app(httpserver.url_for("/api"))) as client:
        failing = client.post("/pipeline", json=alertmanager(unique("Broken")))
    assert failing.status_code == 503 and "HTTP 500" in failing.json()["error"]

    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    try:
        port = silent.getsockname()[1]
        with TestClient(create_app(f"http://127.0.0.1:{port}/api", timeout=0.5)) as client:
            response = client.post("/pipeline", json=alertmanager(unique("Silent")))
    finally:
        silent.close()
    assert response.status_code == 503 and "no answer within 0.5 s" in response.json()["error"]
