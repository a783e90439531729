"""Operator features on a real Prefect server: approvals, pipeline-level notifications, degraded runs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid

import pytest
from pytest_httpserver import HTTPServer

pytestmark = pytest.mark.timeout(180)


def approval_definition(name: str, **approval_config) -> dict:
    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            {
                "id": "ask",
                "type": "approval",
                "config": {"poll_seconds": 1, **approval_config},
                "next": "gate",
            },
            {
                "id": "gate",
                "type": "condition",
                "config": {"if": "nodes.ask.approved", "then": "act", "else": "stop"},
            },
            {"id": "act", "type": "echo"},
            {"id": "stop", "type": "echo"},
        ],
    }


def start_in_thread(flow, definition: dict) -> tuple[threading.Thread, dict]:
    box: dict = {}

    def go() -> None:
        box["state"] = asyncio.run(flow(definition=definition, return_state=True))

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, box


def paused_run_id(name: str, timeout: float = 60) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))
            paused = [r for r in runs if r.state and r.state.is_paused()]
            if paused:
                return str(paused[0].id)
            time.sleep(0.3)
    raise AssertionError(f"no paused run of {name}")


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "rejected"])
def test_approval_waits_for_an_answer_and_branches_on_it(flow, approve):
    from flows.approval import answer_approval

    name = f"approve-{uuid.uuid4().hex[:8]}"
    thread, box = start_in_thread(flow, approval_definition(name))
    run_id = paused_run_id(name)
    answer_approval(run_id, approve=approve, comment="checked the graphs", by="alice")
    thread.join(timeout=60)
    result = box["state"].result()
    decision = result["node_results"]["ask"]["output"]
    assert decision["approved"] is approve and decision["by"] == "alice" and decision["timed_out"] is False
    assert decision["comment"] == "checked the graphs"
    word = "approved" if approve else "rejected"
    assert result["node_results"]["ask"]["summary"] == f"approval: {word} by alice — 'checked the graphs'"
    assert ("act" in result["executed_nodes"]) is approve
    assert ("stop" in result["executed_nodes"]) is not approve


def test_approval_timeout_decides_by_on_timeout(flow):
    name = f"timeout-{uuid.uuid4().hex[:8]}"
    state = asyncio.run(flow(definition=approval_definition(name, timeout_seconds=2), return_state=True))
    result = state.result()
    decision = result["node_results"]["ask"]["output"]
    assert decision == {**decision, "approved": False, "by": "timeout", "timed_out": True}
    assert result["executed_nodes"] == ["ask", "gate", "stop"]
    assert state.is_completed()


def test_approve_command_errors_are_clean(prefect_api):
    from flows.approval import answer_approval
    from nodes.errors import UsageError

    with pytest.raises(UsageError, match="Flow run not found: nope"):
        answer_approval("nope", approve=True)


def policy_definition(name: str, url: str, first: dict) -> dict:
    hook = {"driver": "webhook", "url": url}
    return {
        "name": name,
        "version": "1.0",
        "on_start": [{**hook, "title": "started {{ run.definition }}"}],
        "on_success": [{**hook, "title": "done {{ run.definition }}: {{ run.status }}"}],
        "on_failure": [hook],
        "nodes": [first, {"id": "after", "type": "echo"}],
    }


def titles(httpserver: HTTPServer) -> list[str]:
    return [json.loads(request.data)["title"] for request, _ in httpserver.log]


def test_on_failure_fires_when_a_required_node_raises(flow, httpserver: HTTPServer):
    httpserver.expect_request("/hook").respond_with_data("ok")
    name = f"policy-{uuid.uuid4().hex[:8]}"
    definition = policy_definition(
        name, httpserver.url_for("/hook"), {"id": "boom", "type": "fail", "next": "after"}
    )
    state = asyncio.run(flow(definition=definition, return_state=True))
    assert state.is_failed()
    assert titles(httpserver) == [f"started {name}", f"{name}: run failed"]
    body = json.loads(httpserver.log[-1][0].data)
    assert "node 'boom': failed: boom" in body["text"]


def test_on_success_fires_with_the_run_state(flow, httpserver: HTTPServer):
    httpserver.expect_request("/hook").respond_with_data("ok")
    name = f"policy-{uuid.uuid4().hex[:8]}"
    definition = policy_definition(
        name, httpserver.url_for("/hook"), {"id": "fine", "type": "echo", "next": "after"}
    )
    assert asyncio.run(flow(definition=definition, return_state=True)).is_completed()
    assert titles(httpserver) == [f"started {name}", f"done {name}: completed"]


def test_on_failure_fires_when_the_flow_run_crashes(flow, httpserver: HTTPServer):
    httpserver.expect_request("/hook").respond_with_data("ok")
    name = f"crash-{uuid.uuid4().hex[:8]}"
    definition = policy_definition(
        name,
        httpserver.url_for("/hook"),
        {"id": "slow", "type": "sleep", "config": {"seconds": 8}, "next": "after"},
    )

    async def crash_mid_run():
        run = asyncio.ensure_future(flow(definition=definition, return_state=True))
        await asyncio.sleep(4)
        run.cancel()  # what a killed worker's interrupt looks like to the engine
        with contextlib.suppress(asyncio.CancelledError):
            await run
        assert run.done()

    asyncio.run(crash_mid_run())
    assert titles(httpserver)[0] == f"started {name}"
    assert any(title.startswith(f"{name}: run ") for title in titles(httpserver)[1:]), titles(httpserver)


def test_continue_on_error_runs_the_rest_and_reports_partial(flow):
    definition = {
        "name": f"degraded-{uuid.uuid4().hex[:8]}",
        "version": "1.0",
        "nodes": [{"id": "boom", "type": "fail"}, {"id": "after", "type": "echo"}],
    }
    state = asyncio.run(flow(definition=definition, continue_on_error=True, return_state=True))
    result = state.result()
    assert state.is_completed() and result["status"] == "partial"
    assert result["executed_nodes"] == ["boom", "after"]


def test_policies_are_validated_like_notify_nodes():
    from flows.definition import validate
    from nodes.errors import DefinitionError

    with pytest.raises(DefinitionError) as info:
        validate(
            {"version": "1.0", "nodes": [{"id": "a", "type": "echo"}], "on_failure": [{"driver": "slak"}]}
        )
    assert info.value.problems[-1].startswith(
        "on_failure[0]: config: Value error, unknown notify driver 'slak'"
    )
