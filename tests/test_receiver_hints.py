"""What the receiver adds to a run's parameters beyond the alert: hints an older flow may not take."""

from __future__ import annotations

import asyncio
import uuid


def test_a_deployment_of_older_flow_code_gets_no_hint_its_flow_would_refuse(prefect_api):
    """`alert_format` goes only to a deployment whose flow takes it: a worker still on older
    flow code would fail a run whose parameters its flow does not have."""
    from prefect.client.orchestration import get_client

    from deployments.receiver.prefect import create_run
    from flows.pipeline import run_pipeline

    async def scenario() -> dict[str, dict]:
        names = {"older": f"older-{uuid.uuid4().hex[:8]}", "current": f"current-{uuid.uuid4().hex[:8]}"}
        for kind, name in names.items():
            deployment = await run_pipeline.to_deployment(name=name, parameters={"definition": name})
            if kind == "older":
                deployment._parameter_openapi_schema.properties.pop("alert_format")
            await deployment.apply()
        parameters = {"definition": "x", "payload": {"a": 1}, "alert_format": "alertmanager"}
        async with get_client() as client:
            slots = asyncio.Semaphore(1)
            return {
                kind: (await create_run(client, name, parameters, None, 30, slots)).parameters
                for kind, name in names.items()
            }

    sent = asyncio.run(scenario())
    assert "alert_format" not in sent["older"] and sent["older"]["payload"] == {"a": 1}
    assert sent["current"]["alert_format"] == "alertmanager"
