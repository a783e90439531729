"""The receiver runs only definitions that declare a `{"webhook": {}}` trigger, and checks their payload
against their parameters before any run is created. Against the session's real Prefect server."""

from __future__ import annotations

import asyncio
import json

import pytest
from test_receiver import _deploy, alertmanager, deployments, read_run, unique  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def stage_graph(name: str, triggers: list) -> dict:
    """A script-stage pipeline: one command node whose argument is a typed parameter."""
    return {
        "name": name,
        "version": "1.0",
        "parameters": {
            "target": {"type": "string", "required": True, "enum": ["web", "db"]},
            "workers": {"type": "integer", "default": 4, "minimum": 1, "maximum": 16},
        },
        "triggers": triggers,
        "nodes": [
            {
                "id": "build",
                "type": "command",
                "config": {"command": ["python3", "-c", "print(1)", "{{ params.target }}"]},
            }
        ],
    }


@pytest.fixture
def client(deployments, tmp_path, monkeypatch):  # noqa: F811
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    monkeypatch.delenv("OPSFLOW_RECEIVER_TOKEN", raising=False)
    with TestClient(create_app(timeout=60)) as test_client:
        yield test_client


def write(directory, raw: dict) -> str:
    (directory / f"{raw['name']}.json").write_text(json.dumps(raw))
    return raw["name"]


def test_a_definition_without_a_webhook_trigger_is_refused_on_both_routes(client, tmp_path, caplog):
    name = write(
        tmp_path,
        stage_graph(unique("stages-").lower(), [{"cron": "@daily", "parameters": {"target": "web"}}]),
    )
    asyncio.run(_deploy([name]))  # deployed, and still not reachable over HTTP
    routes = [("/pipeline", {"definition": name}), (f"/definitions/{name}/execute", None)]
    for path, query in routes:
        refused = client.post(path, params=query, json={"payload": {"target": "web"}, "target": "web"})
        assert refused.status_code == 403, refused.text
        error = refused.json()["error"]
        assert f"definition {name!r} declares no webhook trigger" in error and '{"webhook": {}}' in error
    assert client.get(f"/definitions/{name}").json()["webhook"] is False
    assert client.post("/pipeline", params={"definition": "no-such"}, json={}).status_code == 404
    # a sender does not retry a 4xx: every refusal is in the receiver's log, with its reason
    refusals = [r.getMessage() for r in caplog.records if r.name == "opsflow.receiver"]
    assert any(f"POST /pipeline (definition {name}) answered 403" in line for line in refusals), refusals
    assert any("answered 404" in line and "no-such" in line for line in refusals), refusals


def test_the_shipped_health_check_is_a_schedule_and_the_alert_pipelines_take_webhooks(deployments):  # noqa: F811
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    with TestClient(create_app(timeout=60)) as shipped:
        assert shipped.post("/pipeline", params={"definition": "health-check"}, json={}).status_code == 403
        assert shipped.post("/definitions/health-check/execute", json={}).status_code == 403
        listing = {d["name"]: d["webhook"] for d in shipped.get("/definitions").json()}
        assert {k: listing[k] for k in ("health-check", "alert-triage", "ai-triage")} == {
            "health-check": False,
            "alert-triage": True,
            "ai-triage": True,
        }
        accepted = shipped.post(
            "/pipeline", params={"definition": "alert-triage"}, json=alertmanager(unique())
        )
        assert accepted.status_code == 202, accepted.text


def test_a_payload_that_does_not_fit_the_parameters_is_a_400_naming_every_problem(client, tmp_path):
    name = write(tmp_path, stage_graph(unique("typed-").lower(), [{"webhook": {}}]))
    asyncio.run(_deploy([name]))
    detail = client.get(f"/definitions/{name}").json()
    assert detail["webhook"] is True
    assert detail["parameters"]["workers"] == {"type": "integer", "default": 4, "minimum": 1, "maximum": 16}

    bad = client.post(f"/definitions/{name}/execute", json={"payload": {"target": "cache", "workers": 99}})
    assert bad.status_code == 400
    assert bad.json()["error"] == (
        f"the payload does not fit the parameters of {name!r}: payload.target: 'cache' is not one of "
        "'web', 'db'; payload.workers: 99 is over the maximum 16"
    )
    missing = client.post("/pipeline", params={"definition": name}, json={"workers": 2})
    assert missing.status_code == 400 and "payload.target: missing" in missing.json()["error"]

    good = client.post(f"/definitions/{name}/execute", json={"payload": {"target": "db"}})
    assert good.status_code == 202, good.text
    assert read_run(good.json()["flow_run_id"]).parameters["payload"] == {"target": "db"}


def test_a_broken_definition_is_judged_by_the_triggers_it_declares(client, tmp_path):
    closed = stage_graph(unique("broken-").lower(), [])
    closed["nodes"][0]["type"] = "teleport"
    write(tmp_path, closed)
    assert client.post("/pipeline", params={"definition": closed["name"]}, json={}).status_code == 403
    opened = {**closed, "name": unique("broken-").lower(), "triggers": [{"webhook": {}}]}
    write(tmp_path, opened)
    # past the webhook check: its payload cannot be checked, so the answer is the missing deployment
    answer = client.post("/pipeline", params={"definition": opened["name"]}, json={})
    assert answer.status_code == 404 and f"run-pipeline/{opened['name']}" in answer.json()["error"]
