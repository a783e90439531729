"""The `ingest` node through `execute_node`: output shape, duplicates, secrets, store=false."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from pathlib import Path

import pytest

import nodes
from nodes.base import NodeContext, RunInfo
from nodes.errors import ConfigError, IngestError, NodeError
from nodes.incidents import store
from nodes.ingest import HTTP_KEY
from nodes.ingest.samples import SAMPLE_PAYLOAD, sample_payload
from nodes.runtime import execute_node

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True)
def _registered(monkeypatch, tmp_path):
    monkeypatch.setitem(nodes.NODE_TYPES, "ingest", "nodes.ingest.node")
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    yield
    store.dispose_engines()


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def run_ingest(payload, config=None, http=None, alert_format=None) -> dict:
    """Each call is a run of its own, as each delivery is (one run's retries replay its first outcome)."""
    ctx = NodeContext(
        run=RunInfo(trace_id=uuid.uuid4().hex), payload=payload, http=http, alert_format=alert_format
    )
    return execute_node("ingest", "ingest", config or {}, ctx)


def test_auto_takes_the_format_the_receiver_detected(monkeypatch):
    import nodes.ingest.node as ingest_node

    detected: list[str] = []
    detect = ingest_node.detect_format
    monkeypatch.setattr(ingest_node, "detect_format", lambda p: detected.append("again") or detect(p))
    payload = load("alertmanager/firing-group.json")
    assert run_ingest(payload, alert_format="alertmanager")["output"]["format"] == "alertmanager"
    assert detected == []
    # a format no ingest knows, or one whose shape the payload has not (edited since), is no hint
    for told in ("nope", "zabbix"):
        assert run_ingest(load("alertmanager/firing-group.json"), alert_format=told)["output"]["format"] == (
            "alertmanager"
        )
    assert detected == ["again", "again"]


def test_sample_payload_is_the_documented_group():
    assert [a["labels"]["instance"] for a in SAMPLE_PAYLOAD["alerts"]] == ["db-01", "web-01"]
    assert [a["labels"]["severity"] for a in SAMPLE_PAYLOAD["alerts"]] == ["critical", "warning"]
    copy_ = sample_payload()
    copy_["alerts"].clear()
    assert len(SAMPLE_PAYLOAD["alerts"]) == 2


def test_output_shape_and_repeat_delivery():
    result = run_ingest(sample_payload())
    assert result["node_type"] == "ingest" and result["errors"] == []
    out = result["output"]
    assert set(out) == {
        "ignored",
        "format",
        "incident_id",
        "incident",
        "counts",
        "created",
        "duplicate",
        "status",
        "severity",
        # the seeds' flat counters (DESIGN.md)
        "alerts_created",
        "alerts_updated",
        "alerts_resolved",
        "incidents_created",
        "incidents_updated",
        "alert_fingerprint",
    }
    assert (out["format"], out["status"], out["severity"]) == ("alertmanager", "open", "critical")
    assert out["incident_id"] == out["incident"]["id"]
    assert out["counts"] == {"received": 2, "new": 2, "updated": 0, "resolved": 0}
    assert out["created"] and not out["duplicate"]
    assert set(out["incident"]) == {
        "id",
        "key",
        "status",
        "severity",
        "title",
        "source",
        "alert_count",
        "firing_count",
        "alerts",
        "labels",
        "notification_state",
        "created_at",
        "updated_at",
        "resolved_at",
        "truncated_alerts",
    }
    json.dumps(out)  # a run result must serialise

    repeat = run_ingest(sample_payload())["output"]
    assert repeat["duplicate"] and repeat["incident_id"] == out["incident_id"]
    assert [a["receive_count"] for a in repeat["incident"]["alerts"]] == [2, 2]

    resolved = sample_payload()
    for a in resolved["alerts"]:
        a["status"] = "resolved"
    done = run_ingest(resolved)["output"]
    assert (done["status"], done["duplicate"], done["counts"]["resolved"]) == ("resolved", False, 2)


def test_every_fixture_runs_through_the_node():
    for path in sorted((FIXTURES / "inbound").glob("*.json")):
        out = run_ingest(load(f"inbound/{path.name}"))["output"]
        if path.name == "aws-sns-subscription-confirmation.json":
            assert out["ignored"] and out["incident"] is None and out["status"] == "ignored"
            assert out["subscribe_url"].startswith("https://sns.")
        else:
            assert out["incident"]["alert_count"] >= 1, path.name


def test_zabbix_problem_then_ok_resolves_one_incident():
    problem = run_ingest(load("inbound/zabbix-zulip-problem.json"))["output"]
    ok = run_ingest(load("inbound/zabbix-zulip-ok.json"))["output"]
    assert ok["incident_id"] == problem["incident_id"]
    assert ok["status"] == "resolved" and ok["incident"]["alert_count"] == 1


def test_store_false_only_normalises(tmp_path):
    out = run_ingest(sample_payload(), {"store": False})["output"]
    assert out["incident_id"] is None and out["incident"]["id"] is None
    assert out["incident"]["alert_count"] == 2 and out["severity"] == "critical"
    assert out["counts"] == {"received": 0, "new": 0, "updated": 0, "resolved": 0}
    assert not (tmp_path / "incidents.db").exists()


def test_group_by_labels_builds_the_incident_key():
    payload = sample_payload()
    out = run_ingest(payload, {"group_by": ["job"]})["output"]
    assert out["incident"]["key"] == 'group_by:{"job": "node"}'
    other = sample_payload()
    other["groupKey"] = "something-else"
    assert run_ingest(other, {"group_by": ["job"]})["output"]["incident_id"] == out["incident_id"]
    split = run_ingest(sample_payload(), {"group_by": ["instance"]})["output"]
    assert split["incident"]["key"] == 'group_by:{"instance": "db-01|web-01"}'


def test_database_url_from_config_and_env_reference(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'other.db'}"
    monkeypatch.setenv("INGEST_DB", url)
    out = run_ingest(sample_payload(), {"database_url": "${INGEST_DB}"})["output"]
    assert out["incident"]["status"] == "open"
    assert (tmp_path / "other.db").exists()


def test_store_error_hides_the_database_password():
    config = {"database_url": "postgresql://opsflow:s3cret-pass@127.0.0.1:1/db"}
    with pytest.raises(IngestError) as err:
        run_ingest(sample_payload(), config)
    assert err.value.retryable
    assert "s3cret-pass" not in str(err.value)
    assert str(err.value).startswith("node 'ingest': incident store")


def test_signing_secret_requires_a_signed_format():
    with pytest.raises(IngestError, match="cannot be verified .signed formats: pagerduty"):
        run_ingest(sample_payload(), {"signing_secret": "whsec-1234"})


def test_signed_pagerduty_through_the_node(monkeypatch):
    monkeypatch.setenv("PD_SECRET", "whsec-abcdef")
    body = load("inbound/pagerduty-v3-incident-triggered.json")
    raw = json.dumps(body)
    sig = hmac.new(b"whsec-abcdef", raw.encode(), hashlib.sha256).hexdigest()
    http = {"headers": {"X-PagerDuty-Signature": f"v1={sig}"}, "raw_body": raw}
    out = run_ingest(body, {"signing_secret": "${PD_SECRET}"}, http=http)["output"]
    assert out["format"] == "pagerduty" and out["incident"]["title"] == "Test Incident 3"
    bad = {**http, "raw_body": raw.replace("Test Incident 3", "Test Incident 4")}
    with pytest.raises(IngestError, match="does not match") as err:
        run_ingest(body, {"signing_secret": "${PD_SECRET}"}, http=bad)
    assert not err.value.retryable
    # a run made before `http` was its own parameter kept the raw request in the payload
    legacy = {**body, HTTP_KEY: http}
    assert run_ingest(legacy, {"signing_secret": "${PD_SECRET}"})["output"]["format"] == "pagerduty"
    with pytest.raises(IngestError, match="no raw webhook request"):
        run_ingest(body, {"signing_secret": "${PD_SECRET}"})


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"what": "ever"}, "cannot detect the alert format"),
        ({"alerts": [{"labels": {"a": ["b"]}}]}, "labels.a: expected a string"),
        ({"title": "x", "status": "maybe"}, "status: 'maybe' is not firing or resolved"),
    ],
)
def test_bad_payloads_fail_the_node_cleanly(payload, message):
    with pytest.raises(IngestError, match=message) as err:
        run_ingest(payload)
    assert not err.value.retryable


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown ingest driver 'nope'"):
        run_ingest(sample_payload(), {"driver": "nope"})
    with pytest.raises(ConfigError, match="config.group_by"):
        run_ingest(sample_payload(), {"group_by": "instance"})


def test_non_object_payload_is_refused():
    with pytest.raises(NodeError, match="expected a JSON object, got list"):
        run_ingest([1, 2])
