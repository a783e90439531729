"""Typed pipeline parameters: the block is validated with the definition, a payload against the block
(every problem at once, defaults filled in), templates and `when` read `params.<name>`, and the JSON
Schema published for Prefect's run form accepts exactly what the flow accepts."""

from __future__ import annotations

import copy

import jsonschema
import pytest
from fuzz_settings import FEW
from hypothesis import given
from hypothesis import strategies as st

from flows.definition import validate
from flows.parameters import (
    ParameterError,
    deployment_parameter_schema,
    parameter_lines,
    parameters_for,
    payload_schema,
    resolve_parameters,
)
from nodes.base import NodeContext, RunInfo
from nodes.errors import DefinitionError, UsageError
from nodes.runtime import execute_node

# the template's inputs: source (required), environment (enum), parallel_workers (1..16, default 4), timeout
TEMPLATE = {
    "source": {"type": "string", "required": True, "description": "Where to build from"},
    "environment": {"type": "string", "enum": ["staging", "production"], "default": "staging"},
    "parallel_workers": {"type": "integer", "default": 4, "minimum": 1, "maximum": 16},
    "timeout": {"type": "number", "default": 600, "minimum": 1},
    "dry": {"type": "boolean", "default": False},
    "targets": {"type": "array", "items": {"type": "string", "enum": ["web", "db"]}},
    "labels": {"type": "object", "description": "Free labels"},
}


def definition(parameters=None, **node) -> dict:
    tell = {"id": "tell", "type": "notify", "config": {"driver": "console", "title": "x"}, **node}
    raw = {"name": "typed", "version": "1.0", "nodes": [tell]}
    if parameters is not None:
        raw["parameters"] = parameters
    return raw


def problems(raw: dict) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        validate(raw)
    return caught.value.problems


def test_the_template_block_is_valid_and_listed_for_describe_and_dry_run():
    pipeline = validate(definition(TEMPLATE))
    assert list(pipeline.definition.parameters) == list(TEMPLATE)
    lines = parameter_lines(pipeline.definition.parameters)
    assert lines[0] == "Parameters (7):"
    assert "  source (string, required)" in lines and "     Where to build from" in lines
    assert "  environment (string, default 'staging', one of 'staging', 'production')" in lines
    assert "  parallel_workers (integer, default 4, 1..16)" in lines
    assert "  targets (array of string)" in lines
    assert parameter_lines({}) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"type": "integer", "default": 20, "maximum": 16},
            "parameter 'p': default: 20 is over the maximum 16",
        ),
        ({"type": "integer", "default": "4"}, "parameter 'p': default: must be an integer, got a string"),
        ({"type": "integer", "default": True}, "parameter 'p': default: must be an integer, got a boolean"),
        ({"type": "string", "enum": ["a", 3]}, "parameter 'p': enum value: must be a string, got an integer"),
        ({"type": "string", "enum": ["a"], "default": "b"}, "parameter 'p': default: 'b' is not one of 'a'"),
        ({"type": "string", "minimum": 1}, "parameter 'p': minimum applies to integer and number parameters"),
        ({"type": "integer", "minimum": 5, "maximum": 1}, "parameter 'p': minimum 5 is over maximum 1"),
        ({"type": "boolean", "enum": [True]}, "parameter 'p': enum applies to string, integer and number"),
        ({"type": "string", "items": {"type": "string"}}, "parameter 'p': items applies to array parameters"),
        ({"type": "string", "required": True, "default": "x"}, "parameter 'p': required and a default"),
        ({"type": "text"}, "parameter 'p': type: Input should be 'string'"),
        ({"type": "string", "colour": "red"}, "parameter 'p': colour: Extra inputs are not permitted"),
        ({"type": "string", "required": "yes"}, "parameter 'p': required: Input should be a valid boolean"),
        ({"type": "array", "items": {"type": "integer", "enum": ["x"]}}, "parameter 'p': items: enum value"),
        ({}, "parameter 'p': type: Field required"),
    ],
)
def test_a_bad_parameter_is_a_definition_error_naming_it(spec, expected):
    found = problems(definition({"p": spec}))
    assert any(p.startswith(expected) for p in found), found


def test_every_bad_parameter_is_named_at_once_with_node_errors_too():
    raw = definition(
        {"ok": {"type": "string"}, "bad-name": {"type": "string"}, "9lives": {"type": "string"}},
    )
    raw["nodes"][0]["config"]["driver"] = "teleport"
    found = problems(raw)
    assert any(p.startswith("parameter 'bad-name': a name is letters, digits and _") for p in found)
    assert any(p.startswith("parameter '9lives': a name is") for p in found)
    assert any("teleport" in p for p in found), found
    assert len(problems(definition([{"type": "string"}]))) == 1  # a list is no parameters block


def test_templates_and_when_may_read_only_declared_parameters():
    found = problems(
        definition(
            {"workers": {"type": "integer", "default": 2}},
            config={"driver": "console", "title": "{{ params.wokers }} {{ params['workers'] }}"},
            when="params.workers > `1` && params.nope",
        )
    )
    assert any(
        "config.title: template reads params.wokers" in p and "did you mean 'workers'" in p for p in found
    )
    assert any("when: JMESPath" in p and "reads params.nope" in p for p in found), found
    assert not any("reads params.workers" in p for p in found)
    none = problems(definition(None, config={"driver": "console", "title": "{{ params.x }}"}))
    assert any("reads params.x, but the definition declares no parameters" in p for p in none)
    hooked = {
        **definition({"a": {"type": "string"}}),
        "on_failure": [{"driver": "console", "title": "{{ params.b }}"}],
    }
    assert any(p.startswith("on_failure[0]: config.title: template reads params.b") for p in problems(hooked))


def test_a_payload_is_checked_with_every_problem_named_and_defaults_filled_in():
    parameters = validate(definition(TEMPLATE)).definition.parameters
    values = resolve_parameters(
        parameters, {"source": "git@example:repo", "parallel_workers": 8.0, "extra": 1}
    )
    assert values == {
        "source": "git@example:repo",
        "environment": "staging",
        "parallel_workers": 8,
        "timeout": 600,
        "dry": False,
        "targets": None,  # optional, no default: null, never an undefined name
        "labels": None,
    }
    bad = {
        "environment": "qa",
        "parallel_workers": 20,
        "timeout": "10",
        "dry": 1,
        "targets": ["web", "cache", 3],
        "labels": [],
    }
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(parameters, bad, definition="typed")
    assert caught.value.problems == [
        "payload.source: missing (a required parameter)",
        "payload.environment: 'qa' is not one of 'staging', 'production'",
        "payload.parallel_workers: 20 is over the maximum 16",
        "payload.timeout: must be a number, got a string",
        "payload.dry: must be a boolean, got an integer",
        "payload.targets[1]: 'cache' is not one of 'web', 'db'",
        "payload.targets[2]: must be a string, got an integer",
        "payload.labels: must be an object, got an array",
    ]
    assert isinstance(caught.value, UsageError)  # the CLI exits 2, as for any request it cannot meet
    assert str(caught.value).startswith("Payload does not fit the parameters of 'typed':\n  - payload.source")
    lenient = resolve_parameters(parameters, bad, strict=False)  # for a hook: every name, safe values
    assert lenient == {
        **dict.fromkeys(TEMPLATE),
        "environment": "staging",
        "parallel_workers": 4,
        "timeout": 600,
        "dry": False,
    }


def test_a_value_shaped_like_a_credential_is_not_repeated_in_the_error():
    parameters = validate(
        definition({"api_token": {"type": "string", "enum": ["a", "b"]}})
    ).definition.parameters
    with pytest.raises(ParameterError) as caught:
        resolve_parameters(parameters, {"api_token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789"})
    assert caught.value.problems == ["payload.api_token: *** is not one of 'a', 'b'"]


def test_nodes_see_params_in_templates_and_jmespath():
    pipeline = validate(definition(TEMPLATE))
    params = parameters_for(pipeline, {"source": "repo", "parallel_workers": 3})
    ctx = NodeContext(
        run=RunInfo(trace_id="t1", definition="typed"), payload={"source": "repo"}, params=params
    )
    assert ctx.for_node("x").params is params and ctx.data()["params"]["environment"] == "staging"
    shaped = execute_node(
        "shape",
        "transform",
        {"mapping": {"workers": "params.parallel_workers", "env": "params.environment"}},
        ctx.for_node("shape"),
    )
    assert shaped["output"]["workers"] == 3 and shaped["output"]["env"] == "staging"
    said = execute_node(
        "say",
        "notify",
        {"driver": "console", "title": "{{ params.source }} with {{ params.parallel_workers }} workers"},
        ctx.for_node("say"),
    )
    assert "repo with 3 workers" in str(said["output"])


def test_the_published_schema_accepts_what_the_flow_accepts():
    parameters = validate(definition(TEMPLATE)).definition.parameters
    schema = payload_schema(parameters)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["required"] == ["source"]
    assert schema["properties"]["parallel_workers"] == {
        "title": "parallel_workers",
        "type": "integer",
        "position": 2,
        "default": 4,
        "minimum": 1,
        "maximum": 16,
    }
    assert schema["properties"]["source"]["description"] == "Where to build from"
    cases = [
        {"source": "a"},
        {"source": "a", "environment": "production", "targets": ["db"], "labels": {"x": 1}, "other": [1]},
        {},
        {"source": 3},
        {"source": "a", "environment": "qa"},
        {"source": "a", "parallel_workers": 0},
        {"source": "a", "parallel_workers": 2.5},
        {"source": "a", "parallel_workers": 2.0},
        {"source": "a", "timeout": 0.5},
        {"source": "a", "targets": ["web", "x"]},
        {"source": "a", "dry": "no"},
        {"source": "a", "labels": "x"},
    ]
    validator = jsonschema.Draft202012Validator(schema)
    for payload in cases:
        try:
            resolve_parameters(parameters, payload)
            flow_ok = True
        except ParameterError:
            flow_ok = False
        assert validator.is_valid(payload) == flow_ok, payload


def test_the_deployment_schema_types_only_the_payload():
    flow_schema = {
        "title": "Parameters",
        "type": "object",
        "properties": {
            "definition": {"title": "definition", "position": 0},
            "payload": {"anyOf": [{"type": "object"}, {"type": "null"}], "title": "payload", "position": 1},
        },
        "required": ["definition"],
        "definitions": {},
    }
    before = copy.deepcopy(flow_schema)
    parameters = validate(definition(TEMPLATE)).definition.parameters
    typed = deployment_parameter_schema(flow_schema, parameters)
    assert flow_schema == before
    assert typed["properties"]["definition"] == before["properties"]["definition"]
    assert (
        typed["properties"]["payload"]["type"] == "object" and typed["properties"]["payload"]["position"] == 1
    )
    assert set(typed["properties"]["payload"]["properties"]) == set(TEMPLATE)
    assert deployment_parameter_schema(flow_schema, {}) == before


def test_a_command_node_never_lets_a_template_choose_its_program():
    command = {
        "id": "build",
        "type": "command",
        "config": {
            "command": ["./build.sh", "{{ params.target }}"],
            "cwd": "{{ payload.dir }}",
            "env": {
                "PATH": "{{ payload.path }}",
                "LD_PRELOAD": "{{ params.target }}",
                "TARGET": "{{ params.target }}",
            },
        },
    }
    raw = {"version": "1.0", "parameters": {"target": {"type": "string"}}, "nodes": [command]}
    found = problems(raw)
    assert any(p.startswith("node 'build': config.cwd: no {{ }} templates") for p in found), found
    assert any(p.startswith("node 'build': config.env.PATH: no {{ }} templates") for p in found)
    assert any(p.startswith("node 'build': config.env.LD_PRELOAD: no {{ }} templates") for p in found)
    assert not any("TARGET" in p for p in found)  # an argument or a plain variable may come from a parameter
    command["config"] = {"command": ["{{ params.target }}"]}
    assert any("command[0] must be written out" in p for p in problems(raw))
    command["config"] = {"command": ["./build.sh", "{{ params.target }}"], "env": {"PATH": "${BUILD_PATH}"}}
    validate(raw)  # the operator's environment is no payload


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-50, 50)
    | st.floats(-50, 50, allow_nan=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
SMALL = (
    st.integers(-6, 6) | st.floats(-6, 6, allow_nan=False) | st.sampled_from(["", "a", "b"]) | st.booleans()
)
SPEC = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean", "array", "object"])},
    optional={
        "required": st.booleans(),
        "default": SMALL | JSON,
        "enum": st.lists(SMALL, min_size=1, max_size=3),
        "minimum": st.integers(-5, 5),
        "maximum": st.integers(-5, 5),
        "items": st.fixed_dictionaries(
            {"type": st.sampled_from(["string", "integer", "number"])},
            optional={"minimum": st.integers(-3, 3)},
        ),
        "description": st.text(max_size=5),
    },
)
NAMES = st.sampled_from(["a", "b", "c", "bad-name"])
BLOCKS = st.dictionaries(NAMES, SPEC, max_size=3) | st.dictionaries(st.text(max_size=6), JSON, max_size=2)
PAYLOADS = st.dictionaries(NAMES | st.just("z"), SMALL | JSON | st.lists(SMALL, max_size=3), max_size=4)


@FEW
@given(
    st.dictionaries(st.text(max_size=6), SPEC | JSON, max_size=4),
    st.dictionaries(st.text(max_size=6), JSON, max_size=5),
)
def test_any_block_and_payload_get_an_answer_and_the_schema_agrees_with_the_flow(block, payload):
    try:
        parameters = validate(definition(block)).definition.parameters
    except DefinitionError as exc:
        assert exc.problems and all(isinstance(p, str) for p in exc.problems)
        return
    schema = payload_schema(parameters)
    try:
        values = resolve_parameters(parameters, payload)
        flow_ok = True
    except ParameterError as exc:
        assert exc.problems
        flow_ok = False
    else:
        assert set(values) == set(parameters)
    # null means "not given" to the flow; JSON Schema would check it as a value
    given = {k: v for k, v in payload.items() if v is not None}
    assert jsonschema.Draft202012Validator(schema).is_valid(given) == flow_ok, (block, payload)
