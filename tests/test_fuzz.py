"""Fuzzing: definitions, templates and JMESPath give clean errors (our own types), never crashes.

10,000 cases each; marked `slow` (CI runs them; `-m "not slow"` skips them locally).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flows.definition import validate
from nodes import NODE_TYPES
from nodes.base import NodeContext, RunInfo
from nodes.errors import DefinitionError, TemplateError
from nodes.jmes import compile_expression, search
from nodes.templating import resolve

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

MANY = settings(
    max_examples=10_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    database=None,
)

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
small_value = json_leaf | st.lists(json_leaf, max_size=2)
# keys the node types really have, so configs get past "extra input" and into field checks
CONFIG_KEYS = [
    "include",
    "checks",
    "if",
    "then",
    "else",
    "driver",
    "provider",
    "mapping",
    "expression",
    "url",
    "x",
]
node_ids = st.sampled_from(["a", "b", "c", "d", "Bad Id", "", "a"]) | st.text(max_size=6)
node_types = st.sampled_from([*NODE_TYPES, "teleport", ""]) | st.text(max_size=8)


@st.composite
def definitions(draw) -> dict:
    """Mostly well-formed definitions with wrong parts: ids, types, edges, configs, expressions."""
    nodes = []
    for _ in range(draw(st.integers(0, 6))):
        node = {"id": draw(node_ids), "type": draw(node_types)}
        if draw(st.booleans()):
            node["config"] = draw(st.dictionaries(st.text(max_size=10), json_value, max_size=3) | json_value)
        if draw(st.booleans()):
            node["next"] = draw(node_ids | st.lists(node_ids, max_size=3) | json_value)
        if draw(st.booleans()):
            node["when"] = draw(st.text(max_size=20))
        if draw(st.booleans()):
            node["skip_if_errors"] = draw(st.lists(node_ids, max_size=2) | json_value)
        if draw(st.booleans()):
            node[draw(st.sampled_from(["retries", "timeout_seconds", "required", "extra"]))] = draw(
                json_value
            )
        nodes.append(node)
    raw = {"version": draw(st.sampled_from(["1.0", "2.0", 1.0, None])), "nodes": nodes}
    if draw(st.booleans()):
        raw[draw(st.text(max_size=10))] = draw(json_value)
    if draw(st.booleans()):
        raw["on_failure"] = draw(st.lists(json_value, max_size=2))
    return raw


@MANY
@given(definitions())
def test_definitions_only_fail_with_definition_errors(raw):
    try:
        pipeline = validate(raw)
    except DefinitionError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)
        assert "Traceback" not in str(exc)
    else:
        assert pipeline.entry in pipeline.nodes


@MANY
@given(json_value)
def test_arbitrary_json_only_fails_with_definition_errors(raw):
    try:
        validate(raw if isinstance(raw, dict) else {"nodes": raw})
    except DefinitionError as exc:
        assert exc.problems


template_pieces = st.sampled_from(
    [
        "{{", "}}", "{%", "%}", "{#", "#}", "${", "}", "payload", "nodes.a", ".", "|", "upper", "tojson",
        "__class__", "__mro__", "[0]", "'x'", "1/0", "range(3)", "for x in", "endfor", "if", "endif",
        "secret:", "HOME", ":-", " ", "\n", "cycler", "lipsum", "()", "attr('__class__')",
    ]
)  # fmt: skip
templates = st.lists(template_pieces | st.text(max_size=4), max_size=12).map("".join)


@MANY
@given(templates)
def test_templates_only_fail_with_template_errors(template):
    ctx = NodeContext(
        run=RunInfo(trace_id="fuzz"),
        node_id="n",
        payload={"a": [1, 2], "s": "${HOME}"},
        nodes={"a": {"b": "x"}},
        secret_lookup=lambda name: "v" * 8,
    )
    try:
        out = resolve({"field": template}, ctx)
    except TemplateError as exc:
        assert exc.message.startswith("node 'n' config.field")
    else:
        assert isinstance(out["field"], str)
        assert "<class" not in out["field"], "a sandbox escape rendered a class"


@MANY
@given(st.text(max_size=30), json_value)
def test_jmespath_only_fails_with_value_errors(expression, data):
    try:
        compile_expression(expression)
    except ValueError as exc:
        assert expression[:10] in str(exc) or "invalid JMESPath" in str(exc)
        return
    try:
        json.dumps(search(expression, data), default=str)
    except ValueError:
        pass
