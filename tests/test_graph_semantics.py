"""Graph semantics through real flow runs on the session Prefect server.

Skipped conditions, JMESPath truthiness, joins over skipped inputs, and `when` errors.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(180)


def definition(*node_list):
    return {"name": "graph-test", "version": "1.0", "nodes": list(node_list)}


def branching(up: dict | None = None, pick: dict | None = None) -> dict:
    return definition(
        {"id": "up", "type": "echo", "next": "pick", **(up or {})},
        {
            "id": "pick",
            "type": "condition",
            "config": {"if": "payload.level == 'high'", "then": "yes", "else": "no"},
            **(pick or {}),
        },
        {"id": "yes", "type": "echo", "next": "after"},
        {"id": "no", "type": "echo", "next": "after"},
        {"id": "after", "type": "echo"},
    )


@pytest.mark.parametrize(
    ("why", "up", "pick", "params", "pick_reason"),
    [
        ("when", None, {"when": "payload.go"}, {}, "when: payload.go is false"),
        ("skip", None, None, {"skip": ["pick"]}, "in --skip"),
        ("only", None, None, {"only": ["up", "yes", "no", "after"]}, "not in --only"),
        (
            "skip_if_errors",
            {"type": "fail", "required": False},
            {"skip_if_errors": ["up"]},
            {},
            "skip_if_errors: up failed",
        ),
    ],
)
def test_a_skipped_condition_skips_both_branches(run, why, up, pick, params, pick_reason):
    _, result = run(branching(up, pick), payload={"level": "high", "go": False}, **params)
    reasons = {n: result["node_results"][n]["skip_reason"] for n in result["skipped_nodes"]}
    assert reasons == {
        "pick": pick_reason,
        "yes": "condition 'pick' did not run",
        "no": "condition 'pick' did not run",
        "after": "branch not taken",
    }, why


def test_a_failed_condition_or_run_runs_no_branch(run):
    broken = {"config": {"if": "length(payload.level)", "then": "yes", "else": "no"}, "required": False}
    _, result = run(branching(pick=broken), payload={"level": 5})
    assert result["status"] == "partial" and result["executed_nodes"] == ["up", "pick"]
    assert set(result["skipped_nodes"]) == {"yes", "no", "after"}
    _, result = run(branching(up={"type": "fail"}), payload={"level": "high"})
    assert result["status"] == "failed" and result["executed_nodes"] == ["up"]
    assert set(result["skipped_nodes"]) == {"pick", "yes", "no", "after"}


def test_zero_is_true_in_when_and_condition(run):
    _, result = run(
        definition(
            {"id": "guarded", "type": "echo", "when": "payload.count", "next": "pick"},
            {
                "id": "pick",
                "type": "condition",
                "config": {"if": "payload.ratio", "then": "yes", "else": "no"},
            },
            {"id": "yes", "type": "echo"},
            {"id": "no", "type": "echo"},
        ),
        payload={"count": 0, "ratio": 0.0},
    )
    assert result["executed_nodes"] == ["guarded", "pick", "yes"]
    assert result["node_results"]["pick"]["output"]["branch"] == "then"


def test_a_join_sees_skipped_inputs_as_null(run):
    _, result = run(
        definition(
            {"id": "start", "type": "echo", "next": ["maybe", "always"]},
            {"id": "maybe", "type": "echo", "when": "payload.enrich", "config": {"v": 1}, "next": "join"},
            {"id": "always", "type": "echo", "config": {"v": 2}, "next": ["join", "from-skipped"]},
            {"id": "join", "type": "echo", "config": {"maybe_is_null": "{{ nodes.maybe is none }}"}},
            {"id": "from-skipped", "type": "transform", "config": {"source_node": "maybe"}},
        ),
        payload={"enrich": False},
    )
    assert result["status"] == "completed", result["error"]
    assert result["node_results"]["join"]["output"] == {"maybe_is_null": "True"}
    assert result["node_results"]["from-skipped"]["output"] == {"value": None}


def test_a_when_that_errors_fails_the_node(run):
    state, result = run(
        definition(
            {"id": "start", "type": "echo", "next": "page"},
            {"id": "page", "type": "echo", "when": "length(payload.count) > `0`"},
        ),
        payload={"count": 5},
    )
    assert state.is_failed() and result["status"] == "failed"
    assert result["executed_nodes"] == ["start", "page"] and result["skipped_nodes"] == []
    error = result["node_results"]["page"]["errors"][0]["message"]
    assert error.startswith("node 'page': when: JMESPath 'length(payload.count) > `0`' failed")
    assert result["error"] == error


def test_a_payload_nested_too_deep_fails_the_run_before_any_node(run):
    deep: dict = {}
    inner = deep
    for _ in range(100):
        inner["x"] = {}
        inner = inner["x"]
    state, _ = run(definition({"id": "start", "type": "echo"}), payload=deep)
    assert state.is_failed()
    assert "payload: nested more than 64 levels deep (the limit)" in state.message
