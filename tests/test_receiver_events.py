"""Alert events relate to the alert's own flow run and deployment, and are named by the alertname.

`pipeline serve --receiver` serves the receiver in the event loop that runs flows, where
a served run's context was current: Prefect related every alert event to that run (and
its health-check deployment). Here the receiver is served the same way, as a task
started inside a running flow, against the session's Prefect server. The events are read
back through Prefect's events API: an event card in the UI shows the resource's
`prefect.resource.name`, so that is the alertname (or the title), never the fingerprint.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from support.ports import free_port
from test_receiver import alertmanager, deployments, prefect, unique  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def events_of(resource_id: str, count: int) -> list:
    from prefect.events.filters import EventFilter, EventResourceFilter

    from flows.history import flush_client_queues

    flush_client_queues()
    wanted = EventFilter(resource=EventResourceFilter(id=[resource_id]))
    deadline = time.monotonic() + 30
    with prefect() as client:
        while True:  # the server records events in the background
            events = client.read_events(filter=wanted, limit=50).events
            if len(events) >= count or time.monotonic() > deadline:
                return events
            time.sleep(0.2)


def test_events_from_a_receiver_served_inside_a_run_relate_to_each_alerts_run(deployments):  # noqa: F811
    import uvicorn
    from prefect import flow
    from prefect.runtime import flow_run

    from deployments.receiver.app import create_app

    port = free_port()
    marker = unique("EventName")
    untitled = unique("Untitled")
    payloads = [
        alertmanager(unique("Evt")),
        {"title": "Disk almost full on db-01", "labels": {"alertname": marker, "host": "db-01"}},
        {"title": f"  CPU hot on\n db-02 {untitled}  ", "severity": "warning", "labels": {"host": "db-02"}},
    ]

    @flow(name="opsflow-test-serve-host")
    async def host() -> tuple[str, list[dict]]:
        server = uvicorn.Server(uvicorn.Config(create_app(timeout=60), port=port, log_level="warning"))
        task = asyncio.create_task(server.serve())  # the served receiver inherits this run's context
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and not task.done(), "the receiver did not start"
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            answers = [(await client.post("/pipeline", json=p)).json() for p in payloads]
        server.should_exit = True
        await task
        return flow_run.get_id(), answers

    host_run, answers = asyncio.run(host())
    am_alert = payloads[0]["alerts"][0]
    from nodes.ingest import get_format

    generic_fp, titled_fp = (get_format("generic").parse(p).alerts[0]["fingerprint"] for p in payloads[1:])
    for answer, fingerprint, name, severity in (
        (answers[0], am_alert["fingerprint"], am_alert["labels"]["alertname"], "critical"),
        (answers[1], generic_fp, marker, "warning"),
        (answers[2], titled_fp, f"CPU hot on db-02 {untitled}", "warning"),  # no alertname: the title
    ):
        [event] = events_of(f"opsflow.alert.{fingerprint}", 1)
        related = {(r.id, r.role) for r in event.related}
        assert event.event == "opsflow.alert.firing"
        assert event.resource.name == name  # the alertname, not the title; one line
        assert fingerprint not in event.resource.name
        assert event.resource["opsflow.alert.status"] == "firing"
        assert event.resource["opsflow.alert.severity"] == severity
        assert event.resource["opsflow.definition"] == "alert-triage"
        assert (f"prefect.flow-run.{answer['flow_run_id']}", "flow-run") in related
        assert (f"prefect.deployment.{deployments['alert-triage']}", "deployment") in related
        assert f"prefect.flow-run.{host_run}" not in {r.id for r in event.related}
        assert f"prefect.deployment.{deployments['health-check']}" not in {r.id for r in event.related}


def test_an_alert_is_named_by_its_alertname_else_its_title_on_one_short_line():
    from deployments.receiver.alerts import MAX_NAME, alert_name

    assert (
        alert_name({"fingerprint": "f1", "title": "T", "labels": {"alertname": " Disk\nFull "}})
        == "Disk Full"
    )
    assert (
        alert_name({"fingerprint": "f2", "title": "Load high", "labels": {"alertname": "  "}}) == "Load high"
    )
    assert alert_name({"fingerprint": "f3", "title": "(untitled)", "labels": {}}) == "f3"
    long = alert_name({"fingerprint": "f4", "title": "x" * 500, "labels": {}})
    assert len(long) == MAX_NAME and long.endswith("…")
