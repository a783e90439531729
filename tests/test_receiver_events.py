"""Alert events relate to the alert's own flow run and deployment, and are named by the alertname.

`pipeline serve --receiver` serves the receiver in the event loop that runs flows, where
a served run's context was current: Prefect related every alert event to that run (and
its health-check deployment). Here the receiver is served the same way, as a task
started inside a running flow, against the session's Prefect server.
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
    payloads = [
        alertmanager(unique("Evt")),
        {"title": "Disk almost full on db-01", "labels": {"alertname": marker, "host": "db-01"}},
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

    generic_fp = get_format("generic").parse(payloads[1]).alerts[0]["fingerprint"]
    for answer, fingerprint, name in (
        (answers[0], am_alert["fingerprint"], am_alert["labels"]["alertname"]),
        (answers[1], generic_fp, marker),
    ):
        [event] = events_of(f"opsflow.alert.{fingerprint}", 1)
        related = {(r.id, r.role) for r in event.related}
        assert event.resource.name == name  # the alertname, not the title
        assert (f"prefect.flow-run.{answer['flow_run_id']}", "flow-run") in related
        assert (f"prefect.deployment.{deployments['alert-triage']}", "deployment") in related
        assert f"prefect.flow-run.{host_run}" not in {r.id for r in event.related}
        assert f"prefect.deployment.{deployments['health-check']}" not in {r.id for r in event.related}
