"""Definition loading and validation: every problem reported at once, each naming its node."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.definition import load_definition, validate
from flows.json_schema import SCHEMA_PATH, schema_text
from nodes.errors import DefinitionError


def make(*nodes, **top):
    return {"version": "1.0", "nodes": list(nodes), **top}


def node(node_id, type_="condition", **fields):
    if type_ == "condition" and "config" not in fields:
        fields["config"] = {"if": "`true`", "then": []}
    if type_ == "transform" and "config" not in fields:
        fields["config"] = {}
    return {"id": node_id, "type": type_, **fields}


def problems(raw) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        validate(raw)
    return info.value.problems


def test_shipped_definitions_are_valid():
    pipeline = load_definition("health-check")
    assert pipeline.name == "health-check"
    assert list(pipeline.nodes) == ["metrics", "thresholds", "triage", "analyze", "alert", "all-clear"]
    assert pipeline.successors["triage"] == ["analyze", "all-clear"]
    for name in ("alert-triage", "ai-triage"):
        assert load_definition(name).entry == "ingest"


def test_definition_version_is_version_plus_content_hash():
    a = validate(make(node("a", "transform")))
    b = validate(make(node("a", "transform", description="changed")))
    assert a.definition_version.startswith("1.0+") and len(a.definition_version) == 4 + 12
    assert a.definition_version != b.definition_version
    assert validate(make(node("a", "transform"))).definition_version == a.definition_version


def test_load_by_name_path_and_dict(tmp_path, monkeypatch):
    raw = make(node("a", "transform"), description="from a file")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(raw))
    assert load_definition(str(path)).name == "mine"
    assert load_definition(path).description == "from a file"
    assert load_definition(raw).name == "inline"
    assert load_definition({**raw, "name": "named"}).name == "named"
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    assert load_definition("mine").source == str(path)


@pytest.mark.parametrize(
    "ref, message",
    [
        ("no-such-pipeline", "Pipeline definition not found: no-such-pipeline"),
        (".hidden", "Pipeline definition not found: .hidden"),
        ("../etc/passwd", "Config file not found: ../etc/passwd"),
        ("/nonexistent/x.json", "Config file not found: /nonexistent/x.json"),
    ],
)
def test_missing_definitions(ref, message):
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(")):
        load_definition(ref)


def test_invalid_json_names_the_file_and_position(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"version": "1.0",\n "nodes": [}')
    with pytest.raises(DefinitionError) as info:
        load_definition(str(path))
    assert info.value.problems[0].startswith(f"Invalid JSON in config file: {path}")
    assert "line 2" in info.value.problems[0]


def test_missing_version_and_empty_nodes():
    found = problems({"nodes": []})
    assert 'version: missing (add "version": "1.0")' in found
    assert any(p.startswith("nodes:") for p in found)


def test_unknown_type_lists_known_types():
    (found,) = problems(make(node("a", "teleport")))
    assert found.startswith("node 'a': unknown node type 'teleport' (known: ")
    assert "context" in found and "notify" in found


def test_bad_config_names_node_and_field_path():
    found = problems(
        make(
            node("metrics", "context", config={"include": ["cpu", "gpu"]}),
            node("limits", "check", config={"checks": [{"metric": "cpu.percent", "warning": "high"}]}),
        )
    )
    assert any(p.startswith("node 'metrics': config.include[1]:") for p in found)
    assert any(p.startswith("node 'limits': config.checks[0].warning:") for p in found)


def test_extra_config_keys_are_refused():
    (found,) = problems(make(node("m", "context", config={"inculde": ["cpu"]})))
    assert found.startswith("node 'm': config.inculde: Extra inputs are not permitted")


def test_templates_and_references_are_checked_at_run_time_only():
    pipeline = validate(
        make(node("c", "check", config={"checks": [{"metric": "x", "warning": "{{ payload.w }}"}]}))
    )
    assert pipeline.dynamic == {"c": True}


def test_graph_problems_are_all_reported_with_node_names():
    found = problems(
        make(
            node("a", "transform", next="b"),
            node("b", "transform", next=["missing"]),
            node("a", "transform"),
            node("lonely", "transform"),
            node("c", "transform", skip_if_errors=["lonely"], when="nodes.[", next="c"),
        )
    )
    text = "\n".join(found)
    assert "node 'a': duplicate id" in text
    assert "node 'b': next 'missing' is not a node of this definition" in text
    assert "node 'c': next points to itself (cycle)" in text
    assert "node 'c': when: invalid JMESPath 'nodes.['" in text


def test_cycle_unreachable_and_skip_if_errors():
    found = problems(
        make(
            node("a", "transform", next="b"),
            node("b", "transform", next="c"),
            node("c", "transform", next="b"),
            node("island", "transform"),
        )
    )
    assert "node 'b': cycle b → c → b" in found
    assert (
        "node 'island': unreachable from the entry node 'a' "
        "(it has no incoming edge; only the first node is an entry)"
    ) in found
    found = problems(
        make(
            node("a", "transform", next=["b", "c"]),
            node("b", "transform"),
            node("c", "transform", skip_if_errors=["b", "a"]),
        )
    )
    assert found == ["node 'c': skip_if_errors names 'b', which is not upstream of it"]


def test_bad_ids_and_unknown_fields_name_the_node():
    found = problems(
        make({"id": "Bad Id", "type": "transform"}, node("ok", "transform", retries=-1, colour="red"))
    )
    text = "\n".join(found)
    assert "node 'Bad Id': id: String should match pattern" in text
    assert "node 'ok': retries: Input should be greater than or equal to 0" in text
    assert "node 'ok': colour: Extra inputs are not permitted" in text


def test_condition_branches_must_exist_and_count_as_edges():
    found = problems(
        make(node("pick", config={"if": "`true`", "then": "yes", "else": "no"}), node("yes", "transform"))
    )
    assert found == ["node 'pick': next 'no' is not a node of this definition"]
    pipeline = validate(
        make(
            node("pick", config={"if": "`true`", "then": "yes", "else": "no"}),
            node("yes", "transform"),
            node("no", "transform"),
        )
    )
    assert pipeline.successors["pick"] == ["yes", "no"]


def test_list_order_is_the_chain_when_no_node_declares_next():
    pipeline = validate(make(node("a", "transform"), node("b", "transform"), node("c", "transform")))
    assert pipeline.successors == {"a": ["b"], "b": ["c"], "c": []}
    assert pipeline.predecessors == {"a": [], "b": ["a"], "c": ["b"]}


def test_options_come_from_node_or_defaults():
    pipeline = validate(
        make(
            node("a", "transform", retries=5, timeout_seconds=9),
            node("b", "transform"),
            defaults={"max_retries": 1, "retry_delay_seconds": 0.5},
        )
    )
    assert pipeline.options(pipeline.nodes["a"]) == {
        "retries": 5,
        "retry_delay_seconds": 0.5,
        "timeout_seconds": 9,
    }
    assert pipeline.options(pipeline.nodes["b"]) == {
        "retries": 1,
        "retry_delay_seconds": 0.5,
        "timeout_seconds": 300,
    }


def test_checked_in_schema_is_current():
    assert SCHEMA_PATH.read_text() == schema_text(), "definitions/schema.json is stale: run `pipeline schema`"


def test_schema_validates_shipped_definitions_and_node_configs():
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))
    for path in sorted(Path(SCHEMA_PATH.parent).glob("*.json")):
        if path.name != "schema.json":
            assert list(validator.iter_errors(json.loads(path.read_text()))) == [], path
    bad = make(node("m", "context", config={"include": ["gpu"]}))
    assert [e.message for e in validator.iter_errors(bad)] == [
        "'gpu' is not one of ['cpu', 'memory', 'disk', 'processes', 'network', 'load']"
    ]


def test_validating_500_nodes_reports_quickly_and_correctly():
    nodes = [node(f"n{i}", "transform", next=[f"n{i + 1}"] if i < 499 else None) for i in range(500)]
    pipeline = validate(make(*nodes))
    assert len(pipeline.nodes) == 500 and pipeline.predecessors["n499"] == ["n498"]


def test_schema_describes_each_notify_driver_settings():
    import jsonschema

    validator = jsonschema.Draft202012Validator(json.loads(schema_text()))

    def errors(config):
        return [e.message for e in validator.iter_errors(make(node("n", "notify", config=config)))]

    assert errors({"driver": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}", "channel": "#ops"}) == []
    assert errors({"driver": "slack", "webhok_url": "x"}) == [
        "Unevaluated properties are not allowed ('webhok_url' was unexpected)"
    ]
    assert errors({"driver": "webhook"}) == ["'url' is a required property"]
    assert errors({"title": "console is the default", "bogus": 1}) == [
        "Unevaluated properties are not allowed ('bogus' was unexpected)"
    ]
    drivers = json.loads(schema_text())["$defs"]
    assert "webhook_url" in drivers["notify-slack.Settings"]["properties"]
