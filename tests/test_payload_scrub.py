"""Secrets carried in alert payloads are scrubbed from what is stored: the flow run's parameters
in Prefect (read back from the session server), the incident store's rows, and the alert events.
Ordinary alert text comes through as sent."""

from __future__ import annotations

import copy
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from test_receiver import alertmanager, deployments, http, read_run, receiver, unique  # noqa: F401
from test_receiver_events import events_of

from nodes.scrub import scrub_alert_payload, scrub_payload

pytestmark = pytest.mark.timeout(240)

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"

BEARER = "eyStoredBearer0123456789abcdefXYZ"
PASSWORD = "Hunter2StoredPw"
API_KEY = "sk-proj-StoredKey0123456789abcdef"
DSN_PASSWORD = "DsnPw0987zyx"
LABEL_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SECRETS = (BEARER, PASSWORD, API_KEY, DSN_PASSWORD, LABEL_TOKEN)

ORDINARY = {
    "summary": "CPU above 90% on web-01 in production for 10m",
    "description": "The token bucket limiter drops requests; disk-usage-critical-on-host01; pwd reset works",
    "runbook_url": "https://wiki.example.com/runbooks/cpu?section=2&orgId=1",
    "dashboard": "https://grafana.example.com/d/abc123/node-exporter?var-host=web-01",
    "query": 'sum(rate(http_requests_total{job="api",status=~"5.."}[5m])) > 0.05',
    "task": "task-runner-0123456789abcdef",
}


def with_secrets(name: str) -> dict:
    payload = alertmanager(name)
    alert = payload["alerts"][0]
    alert["annotations"].update(ORDINARY)
    alert["annotations"].update(
        {
            "curl": f'curl -H "Authorization: Bearer {BEARER}" https://api.internal/health',
            "log": f"login failed: password={PASSWORD} user=svc",
            "config": f"OPENAI key in env: {API_KEY}",
            "dsn": f"postgresql://app:{DSN_PASSWORD}@db-01:5432/app",
            "password": PASSWORD,
        }
    )
    alert["labels"]["token"] = LABEL_TOKEN
    return payload


def assert_scrubbed(stored: object) -> None:
    text = json.dumps(stored)
    for secret in SECRETS:
        assert secret not in text, secret
    assert "***" in text


def test_ordinary_payloads_pass_through_unchanged():
    for path in sorted(INBOUND.glob("*.json")):
        payload = json.loads(path.read_text())
        assert scrub_alert_payload(copy.deepcopy(payload)) == (payload, 0), path.name
    assert scrub_payload(ORDINARY) == (ORDINARY, 0)


def test_secret_shapes_are_scrubbed_and_the_text_around_them_kept():
    payload = with_secrets("Unit")
    scrubbed, count = scrub_alert_payload(payload)
    annotations = scrubbed["alerts"][0]["annotations"]
    assert count == 6
    assert annotations["curl"] == 'curl -H "Authorization: ***" https://api.internal/health'
    assert annotations["log"] == "login failed: password=*** user=svc"
    assert annotations["config"] == "OPENAI key in env: ***"
    assert annotations["dsn"] == "postgresql://app:***@db-01:5432/app"
    assert annotations["password"] == "***"
    assert scrubbed["alerts"][0]["labels"]["token"] == "***"
    assert {k: annotations[k] for k in ORDINARY} == ORDINARY
    assert scrubbed["alerts"][0]["fingerprint"] == payload["alerts"][0]["fingerprint"]


def test_the_receiver_stores_scrubbed_parameters_and_events(http):  # noqa: F811
    name = unique("Scrubbed")
    payload = with_secrets(name)
    answer = http.post("/pipeline", json=payload)
    assert answer.status_code == 202, answer.text
    stored = read_run(answer.json()["flow_run_id"]).parameters
    assert_scrubbed(stored)
    annotations = stored["payload"]["alerts"][0]["annotations"]
    assert {k: annotations[k] for k in ORDINARY} == ORDINARY
    assert annotations["log"] == "login failed: password=*** user=svc"

    [event] = events_of(f"opsflow.alert.{payload['alerts'][0]['fingerprint']}", 1)
    assert event.payload["labels"]["token"] == "***"
    assert event.payload["labels"]["instance"] == "db-01"
    assert_scrubbed(event.payload)

    # a re-delivery is still a re-delivery: the scrubbed payload makes the same key
    again = http.post("/pipeline", json=with_secrets(name))
    assert again.json()["duplicate"] is True

    executed = http.post(
        "/definitions/alert-triage/execute",
        json={"payload": {"title": unique("Exec"), "note": f"password={PASSWORD}"}},
    )
    assert executed.status_code == 202, executed.text
    assert read_run(executed.json()["flow_run_id"]).parameters["payload"]["note"] == "password=***"


def test_a_cli_run_stores_scrubbed_parameters_and_incident_rows(prefect_api, tmp_path):
    definition = tmp_path / "ingest-only.json"
    definition.write_text(
        json.dumps({"version": "1.0", "nodes": [{"id": "ingest", "type": "ingest", "config": {}}]})
    )
    database = tmp_path / "incidents.db"
    trace = uuid.uuid4().hex
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "OPSFLOW_DATABASE_URL": f"sqlite:///{database}"}
    payload = with_secrets(unique("CliScrub"))
    done = subprocess.run(
        [sys.executable, "-m", "deployments.cli", "run", "--config", str(definition), "--json"]
        + ["--trace-id", trace, "--payload", json.dumps(payload)],
        capture_output=True,
        text=True,
        env=env,
        timeout=200,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert_scrubbed(result)
    assert_scrubbed(read_run(result["run_id"]).parameters)

    with sqlite3.connect(database) as db:
        rows = db.execute("select title, description, labels, annotations from opsflow_alerts").fetchall()
        incidents = db.execute("select key, title from opsflow_incidents").fetchall()
    assert len(rows) == 1 and len(incidents) == 1
    assert_scrubbed(rows)
    annotations = json.loads(rows[0][3])
    assert {k: annotations[k] for k in ORDINARY} == ORDINARY


def test_the_store_scrubs_alerts_that_reach_it_unscrubbed(tmp_path):
    # a signed PagerDuty body reaches the ingest node as sent (its signature needs the bytes)
    from nodes.incidents import store
    from nodes.ingest import get_format

    payload = with_secrets(unique("StoreScrub"))
    parsed = get_format("alertmanager").parse(payload)
    url = f"sqlite:///{tmp_path / 'incidents.db'}"
    title = f"{parsed.title} password={PASSWORD}"
    result = store.ingest(parsed.alerts, key=parsed.group_key, title=title, source="t", database_url=url)
    assert_scrubbed(result["incident"])
    incident = store.get_incident(result["incident"]["id"], database_url=url)
    assert_scrubbed(incident)
    assert incident["title"].endswith("password=***")
    annotations = incident["alerts"][0]["annotations"]
    assert {k: annotations[k] for k in ORDINARY} == ORDINARY
    # a repeat delivery of the same group finds the incident under the same (scrubbed) key
    assert store.record_repeat(parsed.alerts, key=parsed.group_key, database_url=url) == incident["id"]
