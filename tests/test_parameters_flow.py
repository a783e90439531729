"""Typed parameters in the flow: a payload that does not fit fails the run before any node, naming
every problem; one that fits reaches templates and `when` as `params.<name>`, defaults filled in.
Against the session's real Prefect server.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(180)


def typed(**top) -> dict:
    return {
        "name": "typed-flow",
        "version": "1.0",
        "parameters": {
            "target": {"type": "string", "required": True, "enum": ["web", "db"]},
            "workers": {"type": "integer", "default": 4, "minimum": 1, "maximum": 16},
            "note": {"type": "string"},
        },
        "nodes": [
            {
                "id": "shape",
                "type": "transform",
                "config": {
                    "mapping": {"target": "params.target", "workers": "params.workers", "note": "params.note"}
                },
                "next": "many",
            },
            {
                "id": "many",
                "type": "transform",
                "when": "params.workers > `8`",
                "config": {"mapping": {"x": "params.target"}},
            },
        ],
        **top,
    }


def test_params_reach_the_nodes_with_defaults_filled_in(run):
    state, result = run(typed(), payload={"target": "db", "other": "kept"})
    assert state.is_completed(), state
    assert result["node_results"]["shape"]["output"] == {"target": "db", "workers": 4, "note": None}
    assert result["node_results"]["many"]["skipped"]  # when: params.workers > 8 is false for 4
    state, result = run(typed(), payload={"target": "web", "workers": 9})
    assert result["executed_nodes"] == ["shape", "many"]


def test_a_payload_that_does_not_fit_fails_the_run_before_any_node(run):
    state, _ = run(typed(), payload={"target": "cache", "workers": 0})
    assert state.is_failed()
    message = state.message or ""
    assert "payload.target: 'cache' is not one of 'web', 'db'" in message
    assert "payload.workers: 0 is under the minimum 1" in message
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id]))
        )
    assert tasks == []  # no node ran
