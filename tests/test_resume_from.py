"""`pipeline retry RUN --from NODE`: a new run from one node on, the nodes before it taken from the past run.

On the session's Prefect server, for a run `pipeline run` made (the new run runs here)
and for a served deployment (the new run is a run of the deployment, tagged with the old).
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from support.serving import served_in_process
from test_retry import wait_final
from testnodes import CALLS, TEST_NODE_TYPES

import nodes

pytestmark = pytest.mark.timeout(240)


def definition(name: str, report_failures: int = 1) -> dict:
    """first → second → report → echo; `report` fails `report_failures` times; `echo` shows `first`."""
    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            {
                "id": "first",
                "type": "flaky",
                "config": {"key": f"{name}-first", "fail_times": 0},
                "next": "second",
            },
            {
                "id": "second",
                "type": "flaky",
                "config": {"key": f"{name}-second", "fail_times": 0},
                "next": "report",
            },
            {
                "id": "report",
                "type": "flaky",
                "config": {"key": f"{name}-report", "fail_times": report_failures},
                "retries": 0,
                "next": "echo",
            },
            {"id": "echo", "type": "echo", "config": {"first_calls": "{{ nodes.first.calls }}"}},
        ],
    }


def test_which_nodes_run_again_and_which_may_be_taken(monkeypatch):
    for node_type, path in TEST_NODE_TYPES.items():
        monkeypatch.setitem(nodes.NODE_TYPES, node_type, path)
    from flows.definition import load_definition
    from flows.resume import reran, taken_nodes
    from nodes.errors import UsageError

    pipeline = load_definition(definition("plan"))
    assert reran(pipeline, "second") == {"second", "report", "echo"}
    assert list(taken_nodes(pipeline, "second")) == ["first"]
    with pytest.raises(UsageError, match=r"Unknown node id for --from: nope \(nodes: first, second"):
        reran(pipeline, "nope")
    rolled = load_definition(rolled_back("plan"))
    assert list(taken_nodes(rolled, "report")) == ["first", "second"]  # never `undo`
    with pytest.raises(UsageError, match="--from undo: a compensation node runs only in a rollback"):
        reran(rolled, "undo")


def rolled_back(name: str) -> dict:
    """first → second → report; `report` fails twice; a failed run undoes `second` with `undo`."""
    flaky = {"type": "flaky", "retries": 0}
    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            {**flaky, "id": "first", "config": {"key": f"{name}-first", "fail_times": 0}, "next": "second"},
            {
                **flaky,
                "id": "second",
                "config": {"key": f"{name}-second", "fail_times": 0},
                "next": "report",
                "on_failure": ["undo"],
            },
            {**flaky, "id": "report", "config": {"key": f"{name}-report", "fail_times": 2}},
            {**flaky, "id": "undo", "config": {"key": f"{name}-undo", "fail_times": 0}},
        ],
    }


def test_a_node_a_rollback_undid_is_not_taken_and_runs_from_runs_chain(flow, cli_run):
    name = f"resumed-{uuid.uuid4().hex[:8]}"
    first = asyncio.run(flow(definition=rolled_back(name), return_state=True))
    assert first.is_failed() and "rolled back: undo" in first.message
    counts = lambda: [CALLS.get(f"{name}-{n}", 0) for n in ("first", "second", "report", "undo")]  # noqa: E731
    assert counts() == [1, 1, 1, 1]
    # from report: `first` is taken; `second` was undone there, so it runs (and is undone again)
    code, out, err = cli_run("retry", str(first.state_details.flow_run_id), "--from", "report", "--json")
    assert code == 1, err
    second_run = json.loads(out)
    assert counts() == [1, 2, 2, 2]
    assert second_run["node_results"]["first"]["reused_from"] == str(first.state_details.flow_run_id)
    assert "reused_from" not in second_run["node_results"]["second"]
    # from report of that run: `first` is taken from it (it kept what it took), `second` runs again
    code, out, err = cli_run("retry", second_run["run_id"], "--from", "report", "--json")
    assert code == 0, err
    third_run = json.loads(out)
    assert third_run["status"] == "completed" and counts() == [1, 3, 3, 2]
    assert third_run["node_results"]["undo"]["skipped"] is True


def test_a_local_run_starts_again_here_from_the_failed_node(flow, cli_run):
    name = f"resumed-{uuid.uuid4().hex[:8]}"
    failed = asyncio.run(flow(definition=definition(name), return_state=True))
    assert failed.is_failed()
    past_id = str(failed.state_details.flow_run_id)
    code, out, err = cli_run("retry", past_id, "--from", "report", "--json")
    assert code == 0, err
    # the taken nodes have no task run in the new run: none is waited for, or missed
    assert "task runs were recorded" not in err
    result = json.loads(out)
    assert result["status"] == "completed" and result["run_id"] != past_id
    # first and second did not run again: the past run's outputs stood in, and reached `echo`
    assert CALLS[f"{name}-first"] == 1 and CALLS[f"{name}-second"] == 1 and CALLS[f"{name}-report"] == 2
    assert result["node_results"]["first"]["reused_from"] == past_id
    assert "reused_from" not in result["node_results"]["report"]
    assert result["node_results"]["echo"]["output"] == {"first_calls": "1"}
    from test_retry import read

    assert f"resumed-from:{past_id[:8]}" in read(result["run_id"]).tags


def test_a_wrong_from_is_refused_before_anything_runs(flow, cli_run):
    name = f"resumed-{uuid.uuid4().hex[:8]}"
    failed = asyncio.run(flow(definition=definition(name), return_state=True))
    code, _, err = cli_run("retry", str(failed.state_details.flow_run_id), "--from", "nope")
    assert code == 2 and "Unknown node id for --from: nope (nodes: first, second, report, echo)" in err
    assert CALLS[f"{name}-first"] == 1
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    async def running() -> str:
        async with get_client() as client:
            flow_run = await client.create_flow_run(
                Flow(fn=lambda: None, name="run-pipeline"),
                parameters={"definition": definition(name)},
                state=Running(),
            )
            return str(flow_run.id)

    code, _, err = cli_run("retry", asyncio.run(running()), "--from", "second")
    assert code == 2 and "is running: start from a node of a run that is over" in err
    state = asyncio.run(flow(definition=definition(name), from_node="second", return_state=True))
    assert state.is_failed() and "from_run and from_node go together" in state.message


@pytest.fixture
def served(prefect_api, tmp_path, monkeypatch):
    """A definition whose `report` fails twice, served in-process as `pipeline serve` does."""
    for node_type, path in TEST_NODE_TYPES.items():
        monkeypatch.setitem(nodes.NODE_TYPES, node_type, path)
    name = f"resumed-{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.json").write_text(json.dumps(definition(name, report_failures=2)))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    with served_in_process([name]):
        yield name


def test_a_served_run_starts_again_as_a_new_run_of_its_deployment_which_retries_from_its_own(served, cli_run):
    from prefect.deployments import run_deployment

    failed = run_deployment(f"run-pipeline/{served}", timeout=120, poll_interval=0.2)
    assert failed.state.is_failed(), failed.state
    code, out, err = cli_run("retry", failed.name, "--from", "second")
    assert code == 0, err
    assert f"started from node second of {failed.name}" in out
    new_id = out.split("(")[1].split(")")[0]
    resumed = wait_final(uuid.UUID(new_id))
    assert resumed.state.is_failed(), resumed.state  # report's second failure
    assert resumed.deployment_id == failed.deployment_id and resumed.id != failed.id
    assert resumed.parameters["from_run"] == str(failed.id) and resumed.parameters["from_node"] == "second"
    assert f"resumed-from:{str(failed.id)[:8]}" in resumed.tags
    assert CALLS[f"{served}-first"] == 1 and CALLS[f"{served}-second"] == 2 and CALLS[f"{served}-report"] == 2
    # the new run retried (the same flow run): `first`, taken from the past run, is its own now
    code, _, err = cli_run("retry", new_id)
    assert code == 0, err
    retried = wait_final(uuid.UUID(new_id))
    assert retried.state.is_completed(), retried.state
    assert CALLS[f"{served}-first"] == 1 and CALLS[f"{served}-second"] == 2 and CALLS[f"{served}-report"] == 3
    from flows.past_runs import read_run

    shown = asyncio.run(read_run(new_id))
    assert shown["node_results"]["echo"]["output"] == {"first_calls": "1"}
