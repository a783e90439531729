"""The receiver's read-only routes: health, definitions, validation, the OpenAPI document.

Against the session's real Prefect server, through a real uvicorn on 127.0.0.1.
"""

from __future__ import annotations

import copy
import json

import pytest
from test_receiver import deployments, http, receiver  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def test_healthz_and_definition_routes(http):  # noqa: F811
    assert http.get("/healthz").json() == {"status": "ok", "prefect": "ok"}
    listing = {d["name"]: d for d in http.get("/definitions").json()}
    assert {"alert-triage", "health-check"} <= set(listing)
    assert listing["health-check"]["valid"] is True and listing["health-check"]["nodes"] >= 3
    one = http.get("/definitions/health-check").json()
    assert one["nodes"][0]["id"] == "metrics" and one["definition"]["name"] == "health-check"
    assert one["definition_version"].startswith("1.0+")
    assert http.get("/definitions/nope").status_code == 404

    assert http.post("/definitions/health-check/validate").json() == {"valid": True, "problems": []}
    broken = copy.deepcopy(one["definition"])
    broken["nodes"][0]["type"] = "teleport"
    broken["nodes"].append({"id": "metrics", "type": "context"})
    result = http.post("/definitions/health-check/validate", json=broken).json()
    assert result["valid"] is False
    assert any("'metrics': duplicate id" in p for p in result["problems"])
    assert any("teleport" in p for p in result["problems"])
    assert http.post("/definitions/draft/validate", json=one["definition"]).json()["valid"] is True
    assert http.post("/definitions/nope/validate").status_code == 404
    bad = http.post("/definitions/draft/validate", content=b"{", headers={"content-type": "application/json"})
    assert bad.status_code == 400


def test_openapi_describes_every_route(http):  # noqa: F811
    spec = http.get("/openapi.json").json()
    routes = {
        ("post", "/pipeline"),
        ("post", "/definitions/{name}/execute"),
        ("get", "/definitions"),
        ("get", "/definitions/{name}"),
        ("post", "/definitions/{name}/validate"),
        ("get", "/healthz"),
    }
    for method, path in routes:
        operation = spec["paths"][path][method]
        assert operation["summary"], path
    pipeline = spec["paths"]["/pipeline"]["post"]
    assert {"202", "400", "401", "404", "413", "415", "503"} <= set(pipeline["responses"])
    assert "requestBody" in pipeline
    execute_body = spec["paths"]["/definitions/{name}/execute"]["post"]["requestBody"]
    schema = execute_body["content"]["application/json"]["schema"]
    assert {"payload", "source", "trace_id", "environment", "incident_id"} <= set(schema["properties"])


def test_definition_detail_masks_keys_typed_into_a_config_and_keeps_references(
    deployments,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    typed = "https://hooks.slack.com/services/T0TYPED/B0TYPED/typedInSecret7f3a9c"
    definition = {
        "name": "typed",
        "version": "1.0",
        "nodes": [
            {"id": "a", "type": "notify", "config": {"driver": "slack", "webhook_url": typed}, "next": ["b"]},
            {
                "id": "b",
                "type": "notify",
                "config": {"driver": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"},
            },
        ],
    }
    (tmp_path / "typed.json").write_text(json.dumps(definition))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    with TestClient(create_app(timeout=60)) as client:
        detail = client.get("/definitions/typed")
    assert detail.status_code == 200, detail.text
    nodes = detail.json()["definition"]["nodes"]
    assert nodes[0]["config"]["webhook_url"] == "***"
    assert nodes[1]["config"]["webhook_url"] == "${SLACK_WEBHOOK_URL}"  # a name, not a secret
    assert "typedInSecret7f3a9c" not in detail.text and "T0TYPED" not in detail.text


def test_definition_detail_masks_keys_typed_into_pipeline_notifications(
    deployments,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    from fastapi.testclient import TestClient

    from deployments.receiver.app import create_app

    slack = "https://hooks.slack.com/services/T0HOOK/B0HOOK/hookTypedSecret5d2e1b"
    pagerduty = "R0utingKeyTypedIn9a8b7c6d5e4f"
    definition = {
        "name": "typed-hooks",
        "version": "1.0",
        "nodes": [{"id": "a", "type": "notify", "config": {"driver": "console"}}],
        "on_start": [{"driver": "slack", "webhook_url": slack, "title": "started {{ run.definition }}"}],
        "on_failure": [{"driver": "pagerduty", "routing_key": pagerduty}],
        "on_success": [{"driver": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}],
    }
    (tmp_path / "typed-hooks.json").write_text(json.dumps(definition))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    monkeypatch.delenv("OPSFLOW_RECEIVER_TOKEN", raising=False)
    with TestClient(create_app(timeout=60)) as client:
        detail = client.get("/definitions/typed-hooks")
    assert detail.status_code == 200, detail.text
    shown = detail.json()["definition"]
    assert shown["on_start"] == [
        {"driver": "slack", "webhook_url": "***", "title": "started {{ run.definition }}"}
    ]
    assert shown["on_failure"] == [{"driver": "pagerduty", "routing_key": "***"}]
    assert shown["on_success"] == [{"driver": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"}]
    assert "hookTypedSecret5d2e1b" not in detail.text and "T0HOOK" not in detail.text
    assert pagerduty not in detail.text
