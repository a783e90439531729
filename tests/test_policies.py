"""Pipeline-level notifications on the session's Prefect server: every entry tried, each outcome in
the run's own log, a slow target stalling no other run, cancelled and crashed runs told too."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from pytest_httpserver import HTTPServer
from support.ports import free_port
from support.serving import served_in_process
from support.waiting import wait_for
from testnodes import TEST_NODE_TYPES
from werkzeug import Request, Response

import nodes

pytestmark = pytest.mark.timeout(180)


def titles(httpserver: HTTPServer) -> list[str]:
    return [json.loads(request.data)["title"] for request, _ in httpserver.log]


def run_logs(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.history import flush_client_queues

    flush_client_queues()
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return [log.message for log in logs]


def test_every_on_failure_entry_is_tried_and_each_outcome_is_in_the_run_log(flow, httpserver: HTTPServer):
    httpserver.expect_request("/hook").respond_with_data("ok")
    name = f"policy-{uuid.uuid4().hex[:8]}"
    down = f"http://127.0.0.1:{free_port()}/hooks/down"  # nothing listens there
    definition = {
        "name": name,
        "version": "1.0",
        "on_failure": [
            {"driver": "webhook", "url": down},
            {"driver": "webhook", "url": httpserver.url_for("/hook")},
        ],
        "nodes": [{"id": "boom", "type": "fail"}],
    }
    state = asyncio.run(flow(definition=definition, return_state=True))
    assert state.is_failed()
    assert titles(httpserver) == [f"{name}: run failed"]  # the second entry, though the first failed
    logs = run_logs(state.state_details.flow_run_id)
    assert any(
        line.startswith("on_failure[0] (webhook) not delivered") and "Connection refused" in line
        for line in logs
    ), logs
    assert "on_failure[1] delivered (webhook)" in logs, logs


def test_hooks_see_the_node_outputs_and_the_run_link_of_the_run_they_tell(flow, httpserver: HTTPServer):
    """on_success and on_failure template over what the nodes did, read from the run's final state."""
    httpserver.expect_request("/hook").respond_with_data("ok")
    hook = {"driver": "webhook", "url": httpserver.url_for("/hook")}
    name = f"outputs-{uuid.uuid4().hex[:8]}"
    definition = {
        "name": name,
        "version": "1.0",
        "on_success": [{**hook, "title": "ok {{ nodes.first.value }}", "message": "{{ run.ui_url }}"}],
        "on_failure": [{**hook, "title": "failed after {{ nodes.first.value }}, boom={{ nodes.boom }}"}],
        "nodes": [
            {"id": "first", "type": "echo", "config": {"value": "from-first"}, "next": "boom"},
            {"id": "boom", "type": "fail", "when": "payload.fail"},
        ],
    }
    state = asyncio.run(flow(definition=definition, payload={"fail": True}, return_state=True))
    assert state.is_failed()
    state = asyncio.run(flow(definition=definition, payload={"fail": False}, return_state=True))
    assert state.is_completed()
    bodies = [json.loads(request.data) for request, _ in httpserver.log]
    assert [body["title"] for body in bodies] == ["failed after from-first, boom=None", "ok from-first"]
    run_id = str(state.state_details.flow_run_id)
    assert run_id in json.dumps(bodies[1]), bodies[1]  # the run's link (or its id) is in the message


def test_a_slow_hook_target_stalls_no_other_run_in_the_event_loop(flow, httpserver: HTTPServer):
    release, entered = threading.Event(), threading.Event()
    answered: list[float] = []

    def slow(request: Request) -> Response:
        entered.set()
        release.wait(20)
        answered.append(time.monotonic())
        return Response("ok")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    slow_run = {
        "name": f"slow-hook-{uuid.uuid4().hex[:8]}",
        "version": "1.0",
        "on_success": [{"driver": "webhook", "url": httpserver.url_for("/slow"), "timeout_seconds": 25}],
        "nodes": [{"id": "a", "type": "echo"}],
    }
    quick_run = {
        "name": f"quick-{uuid.uuid4().hex[:8]}",
        "version": "1.0",
        "nodes": [{"id": "a", "type": "echo"}],
    }

    async def both() -> float:
        slow_task = asyncio.ensure_future(flow(definition=slow_run, return_state=True))
        while not entered.is_set() and not slow_task.done():  # the slow hook has posted
            await asyncio.sleep(0.05)
        quick = await flow(definition=quick_run, return_state=True)
        finished = time.monotonic()
        assert quick.is_completed()
        release.set()
        assert (await slow_task).is_completed()
        return finished

    quick_finished = asyncio.run(both())
    assert answered and quick_finished < answered[0]  # the quick run ended while the hook waited


def served_definition(name: str, url: str) -> dict:
    return {
        "name": name,
        "version": "1.0",
        "on_failure": [{"driver": "webhook", "url": url, "title": "{{ run.definition }}: {{ run.status }}"}],
        "nodes": [{"id": "slow", "type": "sleep", "config": {"seconds": 8}, "timeout_seconds": 90}],
    }


@pytest.fixture
def served(prefect_api, tmp_path, monkeypatch, httpserver: HTTPServer):
    """One definition served in-process by PipelineServer, as `pipeline serve` does; crash checks at 1 s."""
    for node_type, path in TEST_NODE_TYPES.items():
        monkeypatch.setitem(nodes.NODE_TYPES, node_type, path)
    from deployments import serve

    monkeypatch.setattr(serve, "CRASH_CHECK_SECONDS", 1.0)
    httpserver.expect_request("/hook").respond_with_data("ok")
    name = f"served-{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.json").write_text(json.dumps(served_definition(name, httpserver.url_for("/hook"))))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    with served_in_process([name]) as registered:
        yield name, next(iter(registered))


def test_a_cancelled_run_sends_on_failure_with_status_cancelled(served, httpserver: HTTPServer):
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    name, deployment_id = served
    with get_client(sync_client=True) as client:
        run = client.create_flow_run_from_deployment(deployment_id, parameters={"definition": name})
        wait_for(lambda: client.read_flow_run(run.id).state.is_running(), 60, "the run to start")
        client.set_flow_run_state(run.id, Cancelling(message="cancelled by a test"), force=True)
        wait_for(lambda: client.read_flow_run(run.id).state.is_cancelled(), 60, "the run to end Cancelled")
    wait_for(lambda: httpserver.log, 30, "the on_failure notification")
    assert titles(httpserver) == [f"{name}: cancelled"]


def test_a_run_marked_crashed_by_the_automation_is_told_once_by_pipeline_serve(
    served, httpserver: HTTPServer
):
    """Its process is gone, so no hook of its own runs; `pipeline serve` sends its on_failure, once."""
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed, Running

    name, deployment_id = served
    with get_client(sync_client=True) as client:
        # a run of this deployment whose worker died: Running, then Crashed as the automation sets it
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"definition": name}, state=Running()
        )
        client.set_flow_run_state(run.id, Crashed(message="no heartbeat for 90 s"), force=True)
    wait_for(lambda: httpserver.log, 30, "pipeline serve to tell the crash")
    time.sleep(3)  # three more crash checks: nobody tells it again
    assert titles(httpserver) == [f"{name}: crashed"]


def test_the_crash_automation_matches_only_opsflow_runs():
    """Prefect's own trigger matching, on heartbeats of run-pipeline and of another flow."""
    from prefect.server.events.schemas.automations import AutomationCore
    from prefect.server.events.schemas.events import ReceivedEvent

    from deployments.crashes import crash_automation

    trigger = AutomationCore.model_validate(crash_automation()).trigger

    def heartbeat(flow_name: str) -> ReceivedEvent:
        return ReceivedEvent(
            event="prefect.flow-run.heartbeat",
            resource={"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}"},
            related=[
                {
                    "prefect.resource.id": f"prefect.flow.{uuid.uuid4()}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": flow_name,
                }
            ],
            id=uuid.uuid4(),
            occurred=datetime.now(UTC),
        )

    assert trigger.covers(heartbeat("run-pipeline"))
    assert not trigger.covers(heartbeat("someone-elses-etl"))


def test_the_crash_automation_is_left_out_on_the_embedded_server_or_when_switched_off(monkeypatch):
    from deployments.crashes import SWITCH_ENV, crash_automation_wanted
    from nodes.errors import UsageError

    monkeypatch.delenv(SWITCH_ENV, raising=False)
    assert crash_automation_wanted(embedded=False) is True
    assert crash_automation_wanted(embedded=True) is False  # that server ends with the process
    monkeypatch.setenv(SWITCH_ENV, "off")
    assert crash_automation_wanted(embedded=False) is False
    monkeypatch.setenv(SWITCH_ENV, "maybe")
    with pytest.raises(UsageError, match="OPSFLOW_CRASH_AUTOMATION must be on or off, not 'maybe'"):
        crash_automation_wanted(embedded=False)


def test_an_entry_whose_templates_name_what_the_run_never_had_is_sent_with_the_defaults(
    flow, httpserver: HTTPServer
):
    """A crashed or cancelled run has no node outputs to template over: someone is still told."""
    httpserver.expect_request("/hook").respond_with_data("ok")
    name = f"defaults-{uuid.uuid4().hex[:8]}"
    definition = {
        "name": name,
        "version": "1.0",
        "on_failure": [
            {"driver": "webhook", "url": httpserver.url_for("/hook"), "title": "{{ incident.title }}"}
        ],
        "nodes": [{"id": "boom", "type": "fail"}],
    }
    state = asyncio.run(flow(definition=definition, return_state=True))
    assert state.is_failed()
    assert titles(httpserver) == [f"{name}: run failed"]
    logs = run_logs(state.state_details.flow_run_id)
    assert any("sent with the default title and message" in line for line in logs), logs


def test_switched_off_the_crash_automation_an_earlier_serve_made_is_removed(prefect_api):
    from prefect.client.orchestration import get_client

    from deployments.crashes import crash_automation, ensure_crash_automation, remove_crash_automation

    name = crash_automation()["name"]

    async def scenario() -> tuple[int, int, int]:
        async with get_client() as client:
            await ensure_crash_automation(client)
            before = len(await client.read_automations_by_name(name))
            removed = await remove_crash_automation(client)
            after = len(await client.read_automations_by_name(name))
            return before, removed, after

    assert asyncio.run(scenario()) == (1, 1, 0)
