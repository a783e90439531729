"""Validation reports every problem once, before anything runs: strict types, templates, expressions, refs."""

from __future__ import annotations

import pytest

from flows.definition import validate
from nodes.errors import DefinitionError


def problems(raw) -> list[str]:
    with pytest.raises(DefinitionError) as info:
        validate(raw)
    return info.value.problems


def make(*nodes, **top):
    return {"version": "1.0", "nodes": list(nodes), **top}


def test_a_top_level_error_does_not_hide_node_config_errors():
    found = problems({"nodes": [{"id": "m", "type": "context", "config": {"include": ["gpu"]}}]})
    assert found[0] == 'version: missing (add "version": "1.0")'
    assert any(p.startswith("node 'm': config.include[0]:") for p in found)
    found = problems(
        make({"id": "m", "type": "context", "config": {"include": ["gpu"]}}, description=5, defaults=[])
    )
    assert {p.split(":")[0] for p in found} == {"description", "defaults", "node 'm'"}


def test_duplicate_ids_do_not_hide_unreachable_nodes_nor_invent_a_self_cycle():
    found = problems(
        make(
            {"id": "a", "type": "context", "next": "b"},
            {"id": "b", "type": "context"},
            {"id": "b", "type": "context"},
            {"id": "lone", "type": "context"},
        )
    )
    assert found == [
        "node 'b': duplicate id",
        "node 'lone': unreachable from the entry node 'a' "
        "(it has no incoming edge; only the first node is an entry)",
    ]
    chained = problems(make({"id": "a", "type": "context"}, {"id": "a", "type": "context"}))
    assert chained == ["node 'a': duplicate id"]


def test_a_second_root_is_a_validation_error():
    found = problems(
        make(
            {"id": "a", "type": "context", "next": "join"},
            {"id": "b", "type": "context", "next": "join"},
            {"id": "join", "type": "context"},
        )
    )
    assert found == [
        "node 'b': unreachable from the entry node 'a' "
        "(it has no incoming edge; only the first node is an entry)"
    ]


def test_strict_types_are_not_coerced():
    found = problems(
        make(
            {"id": "a", "type": "context", "required": "yes", "retries": "3", "timeout_seconds": "9"},
            {"id": "b", "type": "check", "config": {"checks": [{"metric": "cpu.percent", "warning": "80"}]}},
            defaults={"max_retries": "2"},
        )
    )
    assert found == [
        "defaults.max_retries: Input should be a valid integer",
        "node 'a': required: Input should be a valid boolean",
        "node 'a': retries: Input should be a valid integer",
        "node 'a': timeout_seconds: Input should be a valid number",
        "node 'b': config.checks[0].warning: Input should be a valid number",
    ]
    # whole numbers are fine where a float is wanted; a template is checked when it runs
    validate(
        make(
            {"id": "a", "type": "context", "retry_delay_seconds": 1, "required": False, "next": "b"},
            {
                "id": "b",
                "type": "check",
                "config": {"checks": [{"metric": "x", "warning": "{{ payload.w }}"}]},
            },
        )
    )


def test_templates_are_compiled_at_load_time():
    found = problems(
        make(
            {
                "id": "tell",
                "type": "notify",
                "config": {"driver": "console", "title": "{{ payload.x | nosuch }}", "message": "{{ oops "},
            },
            on_failure=[{"driver": "console", "message": "{% if %}"}],
        )
    )
    assert found[0] == "node 'tell': config.title: template syntax error: No filter named 'nosuch'. (line 1)"
    assert found[1].startswith(
        "node 'tell': config.message: template syntax error: unexpected end of template"
    )
    assert found[2].startswith("on_failure[0]: config.message: template syntax error:")


def test_unknown_jmespath_functions_and_misplaced_not():
    found = problems(
        make(
            {"id": "ingest", "type": "context", "next": ["pick", "shape"]},
            {
                "id": "pick",
                "type": "condition",
                "when": "lenght(payload.x) > `1`",
                "config": {"if": "!nodes.ingest.duplicate", "then": []},
            },
            {"id": "shape", "type": "transform", "config": {"mapping": {"n": "counts(payload)"}}},
        )
    )
    assert found == [
        "node 'pick': config.if: JMESPath '!nodes.ingest.duplicate': `!` binds tighter than `.`, so it "
        "negates only the first name: write !(nodes.ingest.duplicate) to negate nodes.ingest.duplicate",
        "node 'pick': when: JMESPath 'lenght(payload.x) > `1`': unknown function lenght() "
        "(did you mean length()?)",
        "node 'shape': config.mapping.n: JMESPath 'counts(payload)': unknown function counts() "
        "(did you mean contains()?)",
    ]


def test_references_to_missing_nodes_say_did_you_mean():
    found = problems(
        make(
            {"id": "metrics", "type": "context", "next": ["tell", "shape"]},
            {
                "id": "tell",
                "type": "notify",
                "when": "nodes.metric.cpu.percent > `90`",
                "config": {
                    "driver": "console",
                    "title": "{{ nodes.metrcs.hostname }} {{ nodes['zzz'] }}",
                    "message": "{% for id, o in nodes.items() %}{{ id }}{% endfor %}{{ nodes.get('x') }}",
                },
            },
            {"id": "shape", "type": "transform", "config": {"source_node": "metrix"}},
        )
    )
    assert found == [
        "node 'tell': config.title: template names node 'metrcs', which is not a node of this definition "
        "(did you mean 'metrics'?)",
        "node 'tell': config.title: template names node 'zzz', which is not a node of this definition",
        "node 'tell': when: JMESPath 'nodes.metric.cpu.percent > `90`' names node 'metric', which is not a "
        "node of this definition (did you mean 'metrics'?)",
        "node 'shape': config.source_node: names node 'metrix', which is not a node of this definition "
        "(did you mean 'metrics'?)",
    ]


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        (
            {"driver": "webhook", "url": "ftp://example.test/hook"},
            "config.url: must be an http:// or https:// URL (scheme 'ftp')",
        ),
        (
            {"driver": "slack", "webhook_url": "hooks.example.test/T000/B000/secretpart"},
            "config.webhook_url: must be an http:// or https:// URL (no scheme)",
        ),
        (
            {"driver": "webhook", "url": "https://"},
            "config.url: must be an http:// or https:// URL with a host",
        ),
    ],
)
def test_url_fields_must_be_http_urls_and_are_never_echoed(config, problem):
    (found,) = problems(make({"id": "tell", "type": "notify", "config": config}))
    assert found == f"node 'tell': {problem}"
    assert "secretpart" not in found
    key = "url" if "url" in config else "webhook_url"
    validate(make({"id": "tell", "type": "notify", "config": {**config, key: "${HOOK}"}}))
