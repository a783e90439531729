"""Triggers declared with a definition, and prefect.yaml generated from them (one source of truth).

What is checked here without a server: each trigger kind and its errors, cron strings and time
zones as Prefect takes them, the schedules and event triggers prefect.yaml carries (read back
with Prefect's own `prefect deploy` helpers), and that the checked-in prefect.yaml is current.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fuzz_settings import FEW
from hypothesis import given
from hypothesis import strategies as st

from deployments.specs import deployment_spec, deployment_specs, prefect_yaml
from flows.definition import PROJECT_DEFINITIONS, load_definition, validate
from flows.triggers import (
    CronTrigger,
    EventTrigger,
    accepts_webhook,
    cron_problem,
    event_trigger_specs,
    schedule_specs,
    trigger_lines,
)
from nodes.errors import DefinitionError

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def definition(triggers, parameters=None) -> dict:
    raw = {
        "name": "timed",
        "version": "1.0",
        "nodes": [{"id": "tell", "type": "notify"}],
        "triggers": triggers,
    }
    if parameters is not None:
        raw["parameters"] = parameters
    return raw


def problems(raw: dict) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        validate(raw)
    return caught.value.problems


def test_every_kind_of_trigger_is_read():
    pipeline = validate(
        definition(
            [
                {"cron": "*/5 * * * *", "timezone": "Europe/Berlin"},
                {"interval_seconds": 300},
                {"event": "opsflow.alert.firing", "match": {"alertname": "Disk*"}, "parameters": {"x": 1}},
                {"webhook": {}},
            ]
        )
    )
    cron, interval, event, webhook = pipeline.definition.triggers
    assert isinstance(cron, CronTrigger) and cron.timezone == "Europe/Berlin"
    assert interval.interval_seconds == 300
    assert isinstance(event, EventTrigger) and event.match == {"alertname": "Disk*"}
    assert accepts_webhook(pipeline.definition.triggers)
    assert not accepts_webhook(pipeline.definition.triggers[:3])
    assert trigger_lines(pipeline.definition.triggers) == [
        "Triggers:",
        "  cron '*/5 * * * *' (Europe/Berlin)",
        "  every 300 s",
        "  event opsflow.alert.firing where alertname=Disk*",
        "  webhook (POST /pipeline, /definitions/NAME/execute)",
    ]


def test_each_bad_trigger_is_named_with_its_index_and_field():
    found = problems(
        definition(
            [
                {"cron": "*/5 * * *"},
                {"cron": "61 * * * *", "timezone": "Mars/Olympus"},
                {"interval_seconds": 0},
                {"interval_seconds": "300"},
                {"event": "opsflow alert"},
                {"webhook": {"secret": "x"}},
                {"schedule": "daily"},
                "hourly",
                {"cron": "0 0 * * *", "event": "x"},
            ]
        )
    )
    assert found == [
        "triggers[0].cron: '*/5 * * *': 4 field(s); cron has 5 (minute hour day-of-month month day-of-week)",
        "triggers[1].cron: '61 * * * *': minute '61': 61 is outside 0-59",
        "triggers[1].timezone: 'Mars/Olympus' is not an IANA time zone (for example UTC, America/New_York)",
        "triggers[2].interval_seconds: Input should be greater than or equal to 1",
        "triggers[3].interval_seconds: Input should be a valid number",
        "triggers[4].event: 'opsflow alert': an event name has no spaces (`opsflow.alert.firing`)",
        "triggers[5].webhook.secret: Extra inputs are not permitted",
        'triggers[6]: a trigger is one of {"cron": ...}, {"interval_seconds": ...}, {"event": ...} or '
        '{"webhook": {}}',
        'triggers[7]: a trigger is one of {"cron": ...}, {"interval_seconds": ...}, {"event": ...} or '
        '{"webhook": {}}',
        "triggers[8].event: Extra inputs are not permitted",
    ]


def test_a_schedule_whose_runs_would_all_fail_on_their_payload_is_an_error():
    parameters = {"target": {"type": "string", "required": True}, "n": {"type": "integer", "maximum": 3}}
    found = problems(
        definition(
            [{"cron": "@daily"}, {"interval_seconds": 60, "parameters": {"target": "a", "n": 9}}], parameters
        )
    )
    assert found == [
        "triggers[0]: parameters.target: missing (a required parameter)",
        "triggers[1]: parameters.n: 9 is over the maximum 3",
    ]
    # an event's templated values are rendered by Prefect when the event comes; fixed ones are checked
    event = {"event": "opsflow.alert.firing", "parameters": {"target": "{{ event.resource.name }}", "n": "3"}}
    assert problems(definition([event], parameters)) == [
        "triggers[0]: parameters.n: must be an integer, got a string"
    ]
    event["parameters"]["n"] = 2
    validate(definition([event], parameters))


# what Prefect's scheduler is given must be what it takes: everything accepted here, Prefect accepts
CRONS_ACCEPTED = [
    "*/5 * * * *",
    "0 0 * * *",
    "0 9-17/2 * * mon-fri",
    "15,45 */3 1,15 jan-jun 0",
    "0 0 * * 7",
    "0 0 1 DEC SUN",
    "5/15 * * * *",
    "@hourly",
    "@daily",
    "@midnight",
    "@weekly",
    "@monthly",
    "@yearly",
    "@annually",
]
CRONS_REFUSED = [
    "",
    "* * * *",
    "* * * * * *",
    "60 * * * *",
    "* 24 * * *",
    "* * 0 * *",
    "* * * 13 *",
    "* * * * 8",
    "*/0 * * * *",
    "5-1 * * * *",
    "H * * * *",
    "R * * * *",
    "@reboot",
    "x * * * *",
    "1--2 * * * *",
]


@pytest.mark.parametrize("expression", CRONS_ACCEPTED)
def test_a_cron_accepted_here_is_one_prefect_accepts(expression):
    from prefect.client.schemas.schedules import CronSchedule

    assert cron_problem(expression) is None
    CronSchedule(cron=expression, timezone="UTC")


@pytest.mark.parametrize("expression", CRONS_REFUSED)
def test_a_cron_refused_here_says_why(expression):
    assert cron_problem(expression)


def test_the_time_zones_accepted_here_are_prefects():
    from prefect._internal.schemas.validators import default_timezone

    from flows.triggers import _timezones

    for zone in sorted(_timezones()):
        default_timezone(zone)  # raises for a zone Prefect refuses


def test_schedules_and_event_triggers_as_prefect_deploy_reads_them():
    from prefect.cli.deploy._schedules import _schedule_config_to_deployment_schedule
    from prefect.cli.deploy._triggers import _initialize_deployment_triggers

    triggers = validate(
        definition(
            [
                {"cron": "0 6 * * *", "timezone": "Europe/Berlin", "parameters": {"x": 1}},
                {"interval_seconds": 90},
                {
                    "event": "opsflow.alert.firing",
                    "match": {"alertname": "Disk*"},
                    "parameters": {"a": "{{ event.resource.name }}"},
                },
                {"webhook": {}},
            ]
        )
    ).definition.triggers
    cron, interval = (_schedule_config_to_deployment_schedule(spec) for spec in schedule_specs(triggers))
    assert (cron["schedule"].cron, cron["schedule"].timezone) == ("0 6 * * *", "Europe/Berlin")
    assert cron["parameters"] == {"source": "schedule", "payload": {"x": 1}}
    assert interval["schedule"].interval.total_seconds() == 90 and interval["parameters"] == {
        "source": "schedule"
    }
    [trigger] = _initialize_deployment_triggers("timed", event_trigger_specs("timed", triggers))
    assert trigger.expect == {"opsflow.alert.firing"}
    assert trigger.match.model_dump() == {"alertname": "Disk*"}
    assert trigger.parameters == {
        "definition": "timed",
        "source": "event",
        "payload": {"a": "{{ event.resource.name }}"},
    }
    assert trigger.name == "run-pipeline/timed trigger 3: opsflow.alert.firing"


def test_the_shipped_definitions_declare_their_triggers():
    health = load_definition(PROJECT_DEFINITIONS / "health-check.json")
    assert schedule_specs(health.definition.triggers) == [
        {"cron": "*/5 * * * *", "timezone": "UTC", "active": True, "parameters": {"source": "schedule"}}
    ]
    assert not accepts_webhook(health.definition.triggers)  # a schedule, not an HTTP endpoint
    for name in ("alert-triage", "ai-triage"):
        assert accepts_webhook(load_definition(PROJECT_DEFINITIONS / f"{name}.json").definition.triggers)


def test_the_checked_in_prefect_yaml_is_generated_from_the_definitions():
    expected = prefect_yaml(deployment_specs(PROJECT_DEFINITIONS))
    assert (ROOT / "prefect.yaml").read_text() == expected, "run: pipeline deployments > prefect.yaml"
    data = yaml.safe_load(expected)
    deployments = {d["name"]: d for d in data["deployments"]}
    assert set(deployments) == {"alert-triage", "ai-triage", "health-check"}
    health = deployments["health-check"]
    assert health == {
        **deployment_spec(load_definition(PROJECT_DEFINITIONS / "health-check.json")),
        "work_pool": data["definitions"]["work_pool"],
    }
    assert health["schedules"][0]["parameters"] == {"source": "schedule"}
    assert health["description"] == load_definition(PROJECT_DEFINITIONS / "health-check.json").description


def test_pipeline_deployments_prints_it_without_importing_prefect(tmp_path):
    code = (
        "import sys\n"
        "from deployments.cli.app import main\n"
        "sys.argv = ['pipeline', 'deployments']\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "loaded = [m for m in sys.modules if m == 'prefect' or m.startswith('prefect.')]\n"
        "assert not loaded, loaded[:5]\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "OPSFLOW_DEFINITIONS_DIR")}
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout == (ROOT / "prefect.yaml").read_text()

    # an invalid definition is named, and no partial file is printed
    (tmp_path / "good.json").write_text(json.dumps(definition([{"interval_seconds": 60}])))
    (tmp_path / "bad.json").write_text(json.dumps(definition([{"cron": "never"}])))
    env["OPSFLOW_DEFINITIONS_DIR"] = str(tmp_path)
    bad = subprocess.run(
        [str(Path(PYTHON).parent / "pipeline"), "deployments"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert "bad.json: triggers[0].cron: 'never'" in bad.stderr, bad.stderr


CRON_TEXT = st.text(alphabet="0123456789*/-, @LWH#?abcdefghijklmnopqrstuvwxyz", max_size=24)
TRIGGER = st.fixed_dictionaries(
    {},
    optional={
        "cron": CRON_TEXT | st.integers(),
        "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Nowhere/City", ""]) | st.integers(),
        "interval_seconds": st.integers(-5, 10**9) | st.floats(allow_nan=True) | st.text(max_size=3),
        "event": st.text(max_size=12) | st.none(),
        "match": st.dictionaries(st.text(max_size=4), st.text(max_size=4) | st.integers(), max_size=2),
        "parameters": st.dictionaries(
            st.sampled_from(["a", "b"]), st.integers() | st.text(max_size=12), max_size=2
        ),
        "webhook": st.just({}) | st.dictionaries(st.text(max_size=3), st.integers(), max_size=1),
    },
)


@FEW
@given(st.lists(TRIGGER | st.integers() | st.text(max_size=4), max_size=4))
def test_any_triggers_get_an_answer(triggers):
    try:
        pipeline = validate(definition(triggers, {"a": {"type": "integer", "required": True}}))
    except DefinitionError as exc:
        assert exc.problems and all(p.startswith("triggers[") for p in exc.problems), exc.problems
        return
    schedule_specs(pipeline.definition.triggers)
    event_trigger_specs("timed", pipeline.definition.triggers)
    for trigger in pipeline.definition.triggers:
        if isinstance(trigger, CronTrigger):
            from prefect.client.schemas.schedules import CronSchedule

            CronSchedule(cron=trigger.cron, timezone=trigger.timezone)  # what passes here, Prefect takes
