"""Ingest → notify across runs, through the real incident store: a resolve lands in the firing thread."""

from __future__ import annotations

import json
import uuid

import pytest
from pytest_httpserver import HTTPServer

from deployments.cli import app as cli
from nodes.base import NodeContext, RunInfo
from nodes.ingest.samples import sample_payload
from nodes.runtime import execute_node


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")


def run_alert(payload: dict, slack_api: str) -> dict:
    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="alert-path"), payload=payload)
    ingest = execute_node("ingest", "ingest", {"driver": "auto"}, ctx)["output"]
    ctx.nodes["ingest"] = ingest
    ctx.incident = ingest["incident"]
    config = {"driver": "slack", "token": "xoxb-test-token-123", "channel": "#ops", "api_url": slack_api}
    return execute_node("notify", "notify", config, ctx)["output"]


def test_resolve_replies_in_the_thread_the_firing_alert_started(store, httpserver: HTTPServer):
    httpserver.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": True, "channel": "C024BE91L", "ts": "1700000000.000100"}
    )
    httpserver.expect_request("/api/chat.update").respond_with_json({"ok": True, "ts": "1700000000.000100"})
    fired = run_alert(sample_payload(), httpserver.url_for("/api"))
    assert fired["incident_state"] == {"slack": {"ts": "1700000000.000100", "channel": "C024BE91L"}}

    resolved_payload = sample_payload()
    resolved_payload["status"] = "resolved"
    for alert in resolved_payload["alerts"]:
        alert["status"] = "resolved"
    run_alert(resolved_payload, httpserver.url_for("/api"))

    posts = [json.loads(r.data) for r, _ in httpserver.log if r.path == "/api/chat.postMessage"]
    first, second = posts
    (update,) = [json.loads(r.data) for r, _ in httpserver.log if r.path == "/api/chat.update"]
    assert update["ts"] == "1700000000.000100" and update["text"].startswith("RESOLVED:")
    assert "thread_ts" not in first
    assert second["thread_ts"] == "1700000000.000100" and second["channel"] == "C024BE91L"
    assert second["text"].startswith("RESOLVED:")


def test_incidents_command_lists_and_shows(store, httpserver: HTTPServer, monkeypatch, capsys):
    httpserver.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": True, "channel": "C1", "ts": "1.2"}
    )
    run_alert(sample_payload(), httpserver.url_for("/api"))

    def incidents(*args):
        monkeypatch.setattr("sys.argv", ["pipeline", "incidents", *args])
        with pytest.raises(SystemExit) as info:
            cli.main()
        return info.value.code, *capsys.readouterr()

    code, out, _ = incidents()
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATUS", "SEVERITY", "ALERTS", "UPDATED", "TITLE"]
    assert row.split()[:4] == ["1", "open", "critical", "2/2"] and row.endswith("HighMemory")
    code, out, _ = incidents("1")
    assert code == 0
    assert out.startswith("Incident 1: HighMemory")
    assert "firing    critical  7784fcd5d978e00f" in out
    assert 'Notification state: {"slack": {"channel": "C1", "ts": "1.2"}}' in out
    code, _, err = incidents("99")
    assert code == 2 and err.strip() == "Incident not found: 99"  # not found: exit 2, as every command
    code, _, err = incidents("--status", "closed")
    assert code == 2 and "closed" in err
