"""The generic flow against a real Prefect server (one per session): DAG, branches, failures, retries."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from testnodes import CALLS

pytestmark = pytest.mark.timeout(180)


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def definition(*node_list, **top):
    return {"name": top.pop("name", "flow-test"), "version": "1.0", "nodes": list(node_list), **top}


def test_independent_nodes_run_concurrently(run):
    state, result = run(
        definition(
            {"id": "start", "type": "echo", "next": ["left", "right"]},
            {"id": "left", "type": "sleep", "config": {"seconds": 1}, "next": "join"},
            {"id": "right", "type": "sleep", "config": {"seconds": 1}, "next": "join"},
            {"id": "join", "type": "echo"},
        )
    )
    assert state.is_completed() and result["status"] == "completed"
    left = result["node_results"]["left"]["output"]
    right = result["node_results"]["right"]["output"]
    # each started before the other ended: they overlapped
    assert left["started"] < right["ended"] and right["started"] < left["ended"]
    assert result["executed_nodes"][0] == "start" and result["executed_nodes"][-1] == "join"


def test_branch_not_taken_skips_everything_only_reachable_through_it(run):
    state, result = run(
        definition(
            {
                "id": "pick",
                "type": "condition",
                "config": {"if": "payload.level == 'high'", "then": "page", "else": "log"},
            },
            {"id": "page", "type": "echo", "next": "escalate"},
            {"id": "escalate", "type": "echo", "next": "done"},
            {"id": "log", "type": "echo", "next": "done"},
            {"id": "done", "type": "echo"},
        ),
        payload={"level": "low"},
    )
    assert result["status"] == "completed"
    assert result["executed_nodes"] == ["pick", "log", "done"]
    assert result["skipped_nodes"] == ["page", "escalate"]
    assert {result["node_results"][n]["skip_reason"] for n in ("page", "escalate")} == {"branch not taken"}


def test_when_only_and_skip(run):
    nodes_ = (
        {"id": "a", "type": "echo"},
        {"id": "b", "type": "echo", "when": "payload.notify"},
        {"id": "c", "type": "echo"},
        {"id": "d", "type": "echo"},
    )
    _, result = run(definition(*nodes_), payload={"notify": False}, skip=["c"])
    assert result["executed_nodes"] == ["a", "d"]
    reasons = {n: result["node_results"][n]["skip_reason"] for n in result["skipped_nodes"]}
    assert reasons == {"b": "when: payload.notify is false", "c": "in --skip"}
    _, result = run(definition(*nodes_), payload={"notify": True}, only=["b", "d"])
    assert result["executed_nodes"] == ["b", "d"]
    assert result["node_results"]["a"]["skip_reason"] == "not in --only"


def test_optional_failure_gives_partial_and_skip_if_errors(run):
    state, result = run(
        definition(
            {"id": "enrich", "type": "fail", "required": False, "next": ["uses-enrich", "independent"]},
            {"id": "uses-enrich", "type": "echo", "skip_if_errors": ["enrich"]},
            {"id": "independent", "type": "echo"},
        )
    )
    assert state.is_completed()
    assert result["status"] == "partial" and result["error"] is None
    assert result["node_results"]["enrich"]["errors"][0]["message"] == "node 'enrich': failed: boom"
    assert result["node_results"]["uses-enrich"]["skip_reason"] == "skip_if_errors: enrich failed"
    assert "independent" in result["executed_nodes"]


def test_required_failure_fails_the_flow_run_in_prefect(run):
    state, result = run(
        definition(
            {"id": "first", "type": "fail", "config": {"message": "disk on fire"}},
            {"id": "after", "type": "echo"},
        )
    )
    assert state.is_failed()
    assert result["status"] == "failed"
    assert result["error"] == "node 'first': failed: disk on fire"
    assert result["node_results"]["after"]["skip_reason"] == "run failed at node 'first'"
    with client() as c:
        flow_run = c.read_flow_run(uuid.UUID(result["run_id"]))
    assert flow_run.state.is_failed()
    assert "disk on fire" in flow_run.state.message


def test_retryable_failures_are_retried_then_succeed(run):
    key = f"flaky-{uuid.uuid4().hex}"
    _, result = run(
        definition(
            {"id": "flaky", "type": "flaky", "config": {"key": key, "fail_times": 2}, "retries": 3},
            defaults={"retry_delay_seconds": 0},
        )
    )
    assert result["status"] == "completed"
    assert CALLS[key] == 3
    node = result["node_results"]["flaky"]
    assert node["attempts"] == 3 and node["output"] == {"calls": 3, "attempt": 3, "max_attempts": 4}


def test_non_retryable_failures_are_not_retried(run):
    key = f"flaky-{uuid.uuid4().hex}"
    _, result = run(
        definition(
            {
                "id": "flaky",
                "type": "flaky",
                "config": {"key": key, "fail_times": 5, "retryable": False},
                "retries": 3,
            },
            defaults={"retry_delay_seconds": 0},
        )
    )
    assert result["status"] == "failed" and CALLS[key] == 1


def test_timeout_fails_a_stuck_node_on_time(run):
    state, result = run(
        definition({"id": "stuck", "type": "sleep", "config": {"seconds": 30}, "timeout_seconds": 0.5})
    )
    assert state.is_failed()
    assert "timed out" in result["error"]
    with client() as c:
        flow_run = c.read_flow_run(uuid.UUID(result["run_id"]))
    assert flow_run.total_run_time.total_seconds() < 30


def test_task_runs_are_named_by_node_and_typed(run):
    _, result = run(definition({"id": "alpha", "type": "echo"}, {"id": "beta", "type": "sleep"}))
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with client() as c:
        task_runs = c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(result["run_id"])]))
        )
        flow_run = c.read_flow_run(uuid.UUID(result["run_id"]))
    assert sorted(t.name for t in task_runs) == ["alpha", "beta"]
    assert sorted(t.task_key.split("-")[0] for t in task_runs)
    assert all(t.tags == [] for t in task_runs)
    assert flow_run.name == f"flow-test-{result['trace_id'][:8]}"
    assert result["definition_version"].startswith("1.0+")


def test_outputs_flow_downstream_through_templates(run):
    _, result = run(
        definition(
            {"id": "first", "type": "echo", "config": {"host": "{{ payload.host }}"}},
            {
                "id": "second",
                "type": "echo",
                "config": {"seen": "{{ nodes.first.host }}-{{ run.definition }}"},
            },
        ),
        payload={"host": "db-01"},
    )
    assert result["node_results"]["second"]["output"] == {"seen": "db-01-flow-test"}


SECRET = "opsflow-s3cret-9f8e7d6c"


def test_secrets_never_reach_results_logs_or_artifacts(run, monkeypatch):
    monkeypatch.setenv("OPSFLOW_TEST_SECRET", SECRET)
    state, result = run(
        definition(
            {
                "id": "echo",
                "type": "echo",
                "config": {"url": "https://x/${OPSFLOW_TEST_SECRET}"},
                "next": "fail",
            },
            {"id": "fail", "type": "fail", "config": {"message": "token ${OPSFLOW_TEST_SECRET} rejected"}},
        )
    )
    assert state.is_failed()
    assert SECRET not in json.dumps(result)
    assert result["node_results"]["echo"]["output"] == {"url": "https://x/***"}
    assert result["error"] == "node 'fail': failed: token *** rejected"
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.history import flush_client_queues

    flush_client_queues()
    run_id = uuid.UUID(result["run_id"])
    with client() as c:
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
        flow_run = c.read_flow_run(run_id)
    text = "\n".join(log.message for log in logs)
    assert "echo" in text and "rejected" in text  # the logs are there, and scrubbed
    assert SECRET not in text
    assert sorted(a.type for a in artifacts) == ["markdown", "result", "table"]  # echo's result
    assert SECRET not in json.dumps([[a.data, a.description] for a in artifacts], default=str)
    assert SECRET not in (flow_run.state.message or "")


def test_result_artifacts_describe_every_node(run):
    _, result = run(
        definition(
            {"id": "pick", "type": "condition", "config": {"if": "`false`", "then": "yes", "else": "no"}},
            {"id": "yes", "type": "echo"},
            {"id": "no", "type": "echo"},
            name="artifact-test",
        )
    )
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with client() as c:
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(result["run_id"])])
            )
        )
    by_type = {a.type: a for a in artifacts}
    rows = (
        json.loads(by_type["table"].data) if isinstance(by_type["table"].data, str) else by_type["table"].data
    )
    assert [(r["node"], r["status"]) for r in rows] == [
        ("pick", "completed"),
        ("yes", "skipped"),
        ("no", "completed"),
    ]
    assert by_type["table"].key == "opsflow-artifact-test"
    assert "# artifact-test: completed" in by_type["markdown"].data


def test_shipped_health_check_runs(prefect_api, capsys):
    from flows.pipeline import run_pipeline

    state = asyncio.run(run_pipeline(definition="health-check", return_state=True))
    result = state.result()
    assert result["status"] == "completed"
    assert result["executed_nodes"][:3] == ["metrics", "thresholds", "triage"]
    healthy = result["node_results"]["thresholds"]["output"]["status"] == "ok"
    # a loaded test machine may well trip the load check: either branch is a correct run
    expected = ["all-clear"] if healthy else ["analyze", "alert"]
    assert result["executed_nodes"][3:] == expected
    assert sorted(result["skipped_nodes"]) == sorted({"analyze", "alert", "all-clear"} - set(expected))
    assert "Health check on" in capsys.readouterr().out


def test_alert_triage_notifies_once_then_skips_repeats_and_resolves(
    prefect_api, capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    from flows.pipeline import run_pipeline
    from nodes.ingest.samples import sample_payload

    def triage(payload):
        return asyncio.run(
            run_pipeline(definition="alert-triage", payload=payload, return_state=True)
        ).result()

    first = triage(sample_payload())
    assert first["status"] == "completed" and first["incident_id"] is not None
    assert "console" in first["executed_nodes"] and "slack" in first["skipped_nodes"]
    assert "[CRITICAL] HighMemory" in capsys.readouterr().out
    repeat = triage(sample_payload())
    assert repeat["incident_id"] == first["incident_id"]
    assert repeat["node_results"]["ingest"]["output"]["duplicate"] is True
    assert repeat["node_results"]["console"]["skip_reason"].startswith("when: ")
    resolved = sample_payload()
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
    last = triage(resolved)
    assert last["node_results"]["ingest"]["output"]["incident"]["status"] == "resolved"
    assert "RESOLVED" in capsys.readouterr().out


def test_ai_triage_falls_back_to_local_rules_without_a_key(prefect_api, tmp_path, monkeypatch):
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    from flows.pipeline import run_pipeline
    from nodes.ingest.samples import sample_payload

    state = asyncio.run(run_pipeline(definition="ai-triage", payload=sample_payload(), return_state=True))
    results = state.result()["node_results"]
    analysis = results["analyze"]["output"]
    assert analysis["provider"] == "local" and analysis["fallback_used"] is True
    assert "OPENAI_API_KEY" in analysis["fallback_reason"]
    summary = f"analysis (local (fallback from openai)): {analysis['summary'][:40]}"
    assert results["analyze"]["summary"].startswith(summary)
    ingest = results["ingest"]["output"]
    assert results["ingest"]["summary"].startswith(
        f"ingested 2 alerts into incident {ingest['incident_id']} (2 new"
    )
