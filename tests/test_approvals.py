"""Approvals on the session's real Prefect server: the question, the form, the answer on the record.

The answer comes from the real `pipeline approve` command; what the run kept is read
back through the Prefect API and `pipeline show`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "Restart db-7 now?"


def pipeline(*args: str, api: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api}
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=ROOT,
    )


def start(flow, definition: dict) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def go() -> None:
        box["state"] = asyncio.run(flow(definition=definition, return_state=True))

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


def wait_until(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"never: {what}")


def flow_runs_named(name: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))


def task_states(run_id: uuid.UUID) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
    return {t.name: t for t in runs}


@pytest.fixture(scope="module")
def rejected(prefect_api):
    """One run: `start` → (`ask` → `after`) and (`side`), rejected with `pipeline approve --reject`."""
    from testnodes import TEST_NODE_TYPES

    import nodes

    with pytest.MonkeyPatch.context() as mp:
        for name, path in TEST_NODE_TYPES.items():
            mp.setitem(nodes.NODE_TYPES, name, path)
        from flows.pipeline import run_pipeline

        name = f"approvals-{uuid.uuid4().hex[:8]}"
        ask = {"message": QUESTION, "poll_seconds": 0.5, "timeout_seconds": 120}
        definition = {
            "name": name,
            "version": "1.0",
            "nodes": [
                {"id": "start", "type": "echo", "next": ["ask", "side"]},
                {"id": "ask", "type": "approval", "config": ask, "next": "after"},
                {"id": "after", "type": "echo"},
                {"id": "side", "type": "echo", "config": {"branch": "side"}},
            ],
        }
        thread, box = start(run_pipeline, definition)
        paused = wait_until(lambda: [r for r in flow_runs_named(name) if r.state.is_paused()], "paused")[0]
        # the other branch runs while the approval waits
        side = wait_until(
            lambda: (t := task_states(paused.id).get("side")) is not None and t.state.is_completed() and t,
            "side completed",
        )
        still = flow_runs_named(name)[0]
        answered = pipeline(
            "approve",
            str(paused.id),
            "--reject",
            "--comment",
            "not now",
            "--by",
            "bars-oncall",
            api=prefect_api,
        )
        thread.join(timeout=60)
        from flows.history import flush_client_queues, wait_for_task_runs

        flush_client_queues()
        result = box["state"].result()
        assert asyncio.run(wait_for_task_runs(result["run_id"], 4)) == 4
    return {"paused": paused, "side": side, "still": still, "answered": answered, "result": result}


def test_the_question_is_the_paused_state_message_and_the_form_description(rejected):
    from prefect.client.orchestration import get_client

    paused = rejected["paused"]
    assert paused.state.message == QUESTION
    keyset = paused.state.state_details.run_input_keyset
    with get_client(sync_client=True) as client:
        description = client.read_flow_run_input(paused.id, keyset["description"])
        schema = json.loads(client.read_flow_run_input(paused.id, keyset["schema"]))
    assert QUESTION in description
    assert "approve" in schema["required"] and "default" not in schema["properties"]["approve"]


def test_other_branches_run_while_the_approval_waits(rejected):
    assert rejected["side"].state.is_completed()
    assert rejected["still"].state.is_paused()  # read after `side` completed, before the answer
    assert "side" in rejected["result"]["executed_nodes"]


def test_a_rejection_is_on_the_record(rejected, prefect_api):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    answered, result = rejected["answered"], rejected["result"]
    assert answered.returncode == 0 and "Rejected flow run" in answered.stdout, answered.stderr
    decision = result["node_results"]["ask"]["output"]
    assert decision == {**decision, "decision": "rejected", "by": "bars-oncall", "comment": "not now"}
    run_id = uuid.UUID(result["run_id"])
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run_id)
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    assert flow_run.state.is_completed()
    assert "rejected by bars-oncall: not now" in flow_run.state.message
    lines = [log.message for log in logs if "rejected" in log.message]
    assert any("bars-oncall" in line and "not now" in line for line in lines), lines
    shown = pipeline("show", str(run_id), api=prefect_api)
    assert shown.returncode == 0, shown.stderr
    assert (
        "  Question: Restart db-7 now?\n  Decision: rejected by bars-oncall\n  Comment: not now\n"
        in shown.stdout
    )
    assert "approval: rejected by bars-oncall — 'not now'" in shown.stdout
    table = shown.stdout.split("Result artifact")[1]
    row = next(line for line in table.splitlines() if line.split()[:1] == ["ask"])
    assert "rejected by bars-oncall" in row


def test_the_approval_is_a_task_in_the_run_graph(rejected):
    tasks = task_states(uuid.UUID(rejected["result"]["run_id"]))
    assert tasks["ask"].state.is_completed() and tasks["ask"].task_key.startswith("_record")
    assert [i.id for i in tasks["ask"].task_inputs["wait_for"]] == [tasks["start"].id]
    assert [i.id for i in tasks["after"].task_inputs["wait_for"]] == [tasks["ask"].id]
    assert list(tasks["ask"].task_inputs) == ["node", "wait_for"]


@pytest.mark.parametrize(
    ("required", "continue_on_error", "status"),
    [(False, False, "partial"), (True, True, "partial"), (True, False, "failed")],
)
def test_a_bad_approval_config_fails_the_node_as_any_node_fails(run, required, continue_on_error, status):
    definition = {
        "name": f"bad-approval-{uuid.uuid4().hex[:8]}",
        "version": "1.0",
        "nodes": [
            {
                "id": "ask",
                "type": "approval",
                "required": required,
                "config": {"message": "{{ payload.missing }}"},
                "next": "after",
            },
            {"id": "after", "type": "echo"},
        ],
    }
    state, result = run(definition, continue_on_error=continue_on_error)
    assert result["status"] == status
    assert "missing" in result["node_results"]["ask"]["errors"][0]["message"]
    assert ("after" in result["executed_nodes"]) is (status == "partial")
    assert state.is_failed() is (status == "failed")
    assert tasks_failed(result["run_id"]) == ["ask"]  # the failed approval is in the graph too


def tasks_failed(run_id: str) -> list[str]:
    from flows.history import flush_client_queues, wait_for_task_runs

    flush_client_queues()
    asyncio.run(wait_for_task_runs(run_id, 1))
    return sorted(name for name, t in task_states(uuid.UUID(run_id)).items() if t.state.is_failed())
