"""Compensation nodes (a node's `on_failure`) on the session's Prefect server: real flow runs.

A failed run undoes what completed, newest first; a compensation that fails is on the
record without hiding the original error; a run that did not fail rolls nothing back.
"""

from __future__ import annotations

import uuid

import pytest

from nodes.errors import DefinitionError

pytestmark = pytest.mark.timeout(180)


def definition(*nodes: dict, **extra) -> dict:
    return {"name": "rollback-test", "version": "1.0", "nodes": list(nodes), **extra}


def node(node_id: str, node_type: str = "echo", **fields) -> dict:
    return {"id": node_id, "type": node_type, **fields}


def pipeline_of(*nodes: dict) -> dict:
    """first (undo_first) → second (undo_second) → last; `last` is given by the caller."""
    return definition(
        node("first", config={"step": 1}, next="second", on_failure=["undo_first"]),
        node("second", config={"step": 2}, next="last", on_failure=["undo_second"]),
        *nodes,
        node("undo_first", config={"undoes": "{{ nodes.first.step }}", "why": "{{ run.error }}"}),
        node("undo_second", config={"undoes": "{{ nodes.second.step }}", "status": "{{ run.status }}"}),
    )


def task_runs(run_id: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.history import flush_client_queues, wait_for_task_runs

    flush_client_queues()
    import asyncio

    asyncio.run(wait_for_task_runs(run_id, 5))
    with get_client(sync_client=True) as client:
        return client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))


def test_a_failed_run_undoes_the_completed_nodes_newest_first(run):
    state, result = run(pipeline_of(node("last", "fail", config={"message": "deploy broke"})))
    assert state.is_failed() and result["status"] == "failed"
    # the last completed node is undone first; the failed node had nothing to undo
    assert result["executed_nodes"] == ["first", "second", "last", "undo_second", "undo_first"]
    assert result["error"] == "node 'last': failed: deploy broke"
    assert (
        state.message
        == "Pipeline failed: node 'last': failed: deploy broke; rolled back: undo_second, undo_first"
    )
    outputs = result["node_results"]
    # a compensation sees the outputs so far and the failure
    assert outputs["undo_first"]["output"] == {"undoes": "1", "why": "node 'last': failed: deploy broke"}
    assert outputs["undo_second"]["output"] == {"undoes": "2", "status": "failed"}
    # both are tasks of the run, in the UI's graph: each waits on what it undoes, and on the one before
    every = {t.name: t for t in task_runs(result["run_id"])}

    def waits(name: str) -> set:
        return {i.id for inputs in every[name].task_inputs.values() for i in inputs}

    assert waits("undo_second") == {every["second"].id}
    assert waits("undo_first") == {every["first"].id, every["undo_second"].id}
    # the undone nodes' kept results are expired for a retry, yet still read back (`pipeline show`)
    import asyncio

    from flows.results import stored_results

    kept = asyncio.run(stored_results(every.values()))
    assert kept["first"]["output"] == {"step": 1} and kept["second"]["output"] == {"step": 2}


def test_a_failing_compensation_is_recorded_and_the_original_error_stays(run):
    failing_undo = definition(
        node("first", next="second", on_failure=["undo_first"]),
        node("second", next="last", on_failure=["undo_second"]),
        node("last", "fail", config={"message": "verify failed"}),
        node("undo_first"),
        node("undo_second", "fail", config={"message": "rollback script broke"}),
    )
    state, result = run(failing_undo)
    assert state.is_failed() and result["error"] == "node 'last': failed: verify failed"
    undo = result["node_results"]["undo_second"]
    assert undo["errors"][0]["message"] == "node 'undo_second': failed: rollback script broke"
    # the next compensation still runs
    assert result["executed_nodes"][-2:] == ["undo_second", "undo_first"]
    assert result["node_results"]["undo_first"]["errors"] == []
    assert state.message == (
        "Pipeline failed: node 'last': failed: verify failed; "
        "rolled back: undo_first; rollback failed: undo_second"
    )


def test_a_run_that_does_not_fail_rolls_nothing_back(run):
    state, result = run(pipeline_of(node("last")))
    assert state.is_completed() and result["status"] == "completed"
    assert result["executed_nodes"] == ["first", "second", "last"]
    assert result["skipped_nodes"] == ["undo_first", "undo_second"]
    reasons = {n: result["node_results"][n]["skip_reason"] for n in ("undo_first", "undo_second")}
    assert reasons == dict.fromkeys(reasons, "rollback not needed: the run did not fail")


def test_continue_on_error_ends_partial_and_rolls_nothing_back(run):
    state, result = run(pipeline_of(node("last", "fail")), continue_on_error=True)
    assert result["status"] == "partial"
    assert result["node_results"]["undo_first"]["skip_reason"] == (
        "rollback not needed: the run did not fail (partial: --continue-on-error)"
    )


def test_only_the_nodes_that_completed_are_undone(run):
    # `second` fails: it did not complete, so only `first` is undone
    state, result = run(
        definition(
            node("first", next="second", on_failure=["undo_first"]),
            node("second", "fail", on_failure=["undo_second"]),
            node("undo_first"),
            node("undo_second"),
        )
    )
    assert state.is_failed()
    assert result["executed_nodes"] == ["first", "second", "undo_first"]
    assert (
        result["node_results"]["undo_second"]["skip_reason"]
        == "rollback not needed: 'second' did not complete"
    )


def test_skip_and_when_apply_to_compensation_nodes(run):
    state, result = run(
        definition(
            node("first", next="second", on_failure=["undo_a", "undo_b"]),
            node("second", "fail"),
            node("undo_a", when="nodes.first.dry"),
            node("undo_b"),
        ),
        skip=["undo_b"],
    )
    assert state.is_failed() and result["executed_nodes"] == ["first", "second"]
    assert result["node_results"]["undo_a"]["skip_reason"] == "when: nodes.first.dry is false"
    assert result["node_results"]["undo_b"]["skip_reason"] == "in --skip"
    assert state.message == "Pipeline failed: node 'second': failed: boom"


def test_only_applies_to_compensation_nodes(run):
    state, result = run(pipeline_of(node("last", "fail")), only=["first", "second", "last", "undo_first"])
    assert result["executed_nodes"] == ["first", "second", "last", "undo_first"]
    assert result["node_results"]["undo_second"]["skip_reason"] == "not in --only"


def test_a_compensation_node_has_its_retries_and_timeout(run):
    state, result = run(
        definition(
            node("first", next="second", on_failure=["undo_a", "undo_b"]),
            node("second", "fail"),
            node("undo_a", "flaky", config={"key": f"undo-{uuid.uuid4().hex}", "fail_times": 1}, retries=1),
            node("undo_b", "sleep", config={"seconds": 30}, timeout_seconds=0.5),
        )
    )
    undo_a, undo_b = result["node_results"]["undo_a"], result["node_results"]["undo_b"]
    assert undo_a["errors"] == [] and undo_a["attempts"] == 2
    assert undo_b["errors"][0]["message"] == "node 'undo_b' timed out after 0.5 s"
    assert result["error"] == "node 'second': failed: boom"


def test_a_node_lists_its_compensations_in_the_order_they_run(run):
    state, result = run(
        definition(
            node("first", next="second", on_failure=["undo_b", "undo_a"]),
            node("second", "fail"),
            node("undo_a"),
            node("undo_b"),
        )
    )
    assert result["executed_nodes"] == ["first", "second", "undo_b", "undo_a"]


def test_a_chain_without_next_leaves_the_compensation_nodes_out(run):
    state, result = run(definition(node("a", on_failure=["undo_a"]), node("b"), node("undo_a")))
    assert state.is_completed() and result["executed_nodes"] == ["a", "b"]


# validation: every problem at once, each naming its node


def problems(raw: dict) -> list[str]:
    from flows.definition import validate

    with pytest.raises(DefinitionError) as info:
        validate(raw)
    return info.value.problems


def test_an_unknown_compensation_id_is_named_with_a_hint():
    found = problems(
        definition(node("build", "context", on_failure=["undo_bild"]), node("undo_build", "context"))
    )
    assert found == [
        "node 'build': on_failure names 'undo_bild', which is not a node of this definition "
        "(did you mean 'undo_build'?)"
    ]


def test_a_compensation_node_is_no_entry_and_has_no_next():
    found = problems(
        definition(node("undo", "context", next="build"), node("build", "context", on_failure=["undo"]))
    )
    assert found == [
        "node 'undo' (a compensation node, in on_failure of 'build'): is the first node, the entry; "
        "it runs only in a rollback",
        "node 'undo' (a compensation node, in on_failure of 'build'): has next; it runs alone in a "
        "rollback (name several in on_failure)",
    ]


def test_compensations_are_not_chained_nor_approvals_nor_conditions_nor_the_node_itself():
    found = problems(
        definition(
            node("build", "context", next="deploy", on_failure=["ask", "build"]),
            node("deploy", "context", on_failure=["gate", "undo", "undo"]),
            node("ask", "approval"),
            node("gate", "condition", config={"if": "`true`", "then": "deploy"}),
            node("undo", "context", on_failure=["extra"]),
            node("extra", "context"),
        )
    )
    assert found == [
        "node 'build': on_failure names the node itself: a compensation node is another node",
        "node 'deploy': on_failure names 'undo' twice",
        "node 'ask' (a compensation node, in on_failure of 'build'): is an approval; a rollback neither "
        "waits for a person nor branches",
        "node 'gate' (a compensation node, in on_failure of 'deploy'): is a condition; a rollback neither "
        "waits for a person nor branches",
        "node 'undo' (a compensation node, in on_failure of 'deploy'): has an on_failure of its own; "
        "compensations are not chained",
    ]


def test_a_compensation_node_in_next_or_shared_is_reported_and_never_unreachable():
    found = problems(
        definition(
            node("build", "context", next="deploy", on_failure=["undo"]),
            node("deploy", "context", next="undo", on_failure=["undo"]),
            node("undo", "context"),
        )
    )
    assert found == [
        "node 'undo': compensation node of both 'build' and 'deploy'; a compensation node undoes one node "
        "(give each its own)",
        "node 'deploy': next 'undo' is a compensation node (in on_failure of 'build'); it runs only to roll "
        "a failed run back, never in the graph",
    ]
    # a valid compensation node has no incoming edge and is not reported as a second root
    from flows.definition import validate

    valid = validate(
        definition(
            node("build", "context", next="deploy", on_failure=["undo"]),
            node("deploy", "context"),
            node("undo", "context"),
        )
    )
    assert valid.compensations == {"undo": "build"} and valid.predecessors["undo"] == []
