"""`pipeline serve` registers each deployment from its definition: the typed payload schema of the run
form, the schedules and event triggers, the description and parameters prefect.yaml carries.
Read back through the session's real Prefect API."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from deployments.specs import deployment_spec
from flows.definition import load_definition

pytestmark = pytest.mark.timeout(180)


def typed_definition(name: str) -> dict:
    return {
        "name": name,
        "version": "1.0",
        "description": "Build and ship one target",
        "parameters": {
            "source": {"type": "string", "required": True, "description": "Where to build from"},
            "environment": {"type": "string", "enum": ["staging", "production"], "default": "staging"},
            "parallel_workers": {"type": "integer", "default": 4, "minimum": 1, "maximum": 16},
        },
        "triggers": [
            {"cron": "0 6 * * 1-5", "timezone": "Europe/Berlin", "parameters": {"source": "main"}},
            {"interval_seconds": 3600, "parameters": {"source": "nightly"}},
            {
                "event": "opsflow.alert.firing",
                "match": {"alertname": "Disk*"},
                "parameters": {"source": "{{ event.resource.name }}"},
            },
            {"webhook": {}},
        ],
        "nodes": [
            {
                "id": "say",
                "type": "notify",
                "config": {
                    "driver": "console",
                    "title": "{{ params.source }} x{{ params.parallel_workers }}",
                },
            }
        ],
    }


@pytest.fixture
def registered(prefect_api, tmp_path, monkeypatch):
    """A typed definition served from a definitions directory: (pipeline, deployment read back)."""
    from prefect.client.orchestration import get_client

    from deployments.serve import register_deployments

    name = f"typed-{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.json").write_text(json.dumps(typed_definition(name)))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))

    async def register():
        [deployment_id] = await register_deployments([name])
        async with get_client() as client:
            deployment = await client.read_deployment(deployment_id)
            automations = await client.read_resource_related_automations(
                f"prefect.deployment.{deployment_id}"
            )
        return deployment, automations

    deployment, automations = asyncio.run(register())
    return load_definition(tmp_path / f"{name}.json"), deployment, automations


def test_the_run_form_shows_the_typed_parameters_and_prefect_enforces_them(registered):
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError

    pipeline, deployment, _ = registered
    schema = deployment.parameter_openapi_schema
    payload = schema["properties"]["payload"]
    assert payload["type"] == "object" and payload["required"] == ["source"]
    assert payload["properties"]["source"] == {
        "title": "source",
        "type": "string",
        "position": 0,
        "description": "Where to build from",
    }
    assert payload["properties"]["environment"]["enum"] == ["staging", "production"]
    assert payload["properties"]["parallel_workers"] == {
        "title": "parallel_workers",
        "type": "integer",
        "position": 2,
        "default": 4,
        "minimum": 1,
        "maximum": 16,
    }
    # the other flow parameters are the flow's own, unchanged
    assert {"definition", "source", "environment", "trace_id", "only", "skip"} <= set(schema["properties"])
    assert deployment.enforce_parameter_schema

    with get_client(sync_client=True) as client:
        with pytest.raises(PrefectHTTPStatusError) as refused:
            client.create_flow_run_from_deployment(
                deployment.id, parameters={"payload": {"source": "x", "parallel_workers": 99}}
            )
        assert refused.value.response.status_code == 409
        assert "99 is greater than the maximum of 16" in refused.value.response.text
        run = client.create_flow_run_from_deployment(deployment.id, parameters={"payload": {"source": "x"}})
        client.delete_flow_run(run.id)  # nothing serves it here
    assert run.parameters == {"definition": pipeline.name, "payload": {"source": "x"}}


def test_schedules_triggers_description_and_parameters_are_those_of_prefect_yaml(registered):
    pipeline, deployment, automations = registered
    spec = deployment_spec(pipeline)
    assert deployment.name == spec["name"] == pipeline.name
    assert deployment.description == spec["description"] == "Build and ship one target"
    assert deployment.parameters == spec["parameters"] == {"definition": pipeline.name}

    cron, interval = sorted(deployment.schedules, key=lambda s: hasattr(s.schedule, "interval"))
    assert (cron.schedule.cron, cron.schedule.timezone) == ("0 6 * * 1-5", "Europe/Berlin")
    assert cron.parameters == {"source": "schedule", "payload": {"source": "main"}}
    assert interval.schedule.interval.total_seconds() == 3600
    assert interval.parameters == {"source": "schedule", "payload": {"source": "nightly"}}
    assert [s["parameters"] for s in spec["schedules"]] == [cron.parameters, interval.parameters]

    [automation] = automations
    [expected] = spec["triggers"]
    assert automation.name == expected["name"] and automation.enabled
    assert automation.trigger.expect == {"opsflow.alert.firing"}
    assert automation.trigger.match.model_dump() == {"alertname": "Disk*"}
    [action] = automation.actions
    assert action.deployment_id == deployment.id
    assert action.parameters == {
        "definition": pipeline.name,
        "source": "event",
        "payload": {"source": "{{ event.resource.name }}"},
    }


def test_serving_again_replaces_the_triggers_instead_of_adding_to_them(registered, tmp_path):
    from prefect.client.orchestration import get_client

    from deployments.serve import register_deployments

    pipeline, deployment, _ = registered
    raw = typed_definition(pipeline.name)
    raw["triggers"] = [{"webhook": {}}]  # no schedule and no event any more
    (tmp_path / f"{pipeline.name}.json").write_text(json.dumps(raw))

    async def again():
        await register_deployments([pipeline.name])
        async with get_client() as client:
            read = await client.read_deployment(deployment.id)
            automations = await client.read_resource_related_automations(
                f"prefect.deployment.{deployment.id}"
            )
        return read, automations

    read, automations = asyncio.run(again())
    assert read.schedules == [] and automations == []
