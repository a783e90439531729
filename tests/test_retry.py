"""`pipeline retry RUN` on the session's Prefect server: what the UI's Retry does, for a served deployment.

The same flow run runs again (its run_count goes up) when `pipeline serve`'s server picks
it up; a run that is not over, or that no deployment serves, is refused with the reason.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import pytest
from support.serving import served_in_process
from testnodes import TEST_NODE_TYPES

import nodes

pytestmark = pytest.mark.timeout(240)


def definition(name: str, key: str) -> dict:
    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            {
                "id": "first",
                "type": "flaky",
                "config": {"key": f"{key}-first", "fail_times": 0},
                "next": "second",
            },
            {
                "id": "second",
                "type": "flaky",
                "config": {"key": f"{key}-second", "fail_times": 1},
                "retries": 0,
            },
        ],
    }


@pytest.fixture
def served(prefect_api, tmp_path, monkeypatch):
    """A definition whose second node fails once, served in-process as `pipeline serve` does."""
    for node_type, path in TEST_NODE_TYPES.items():
        monkeypatch.setitem(nodes.NODE_TYPES, node_type, path)
    name = f"retried-{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.json").write_text(json.dumps(definition(name, name)))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    with served_in_process([name]):
        yield name


def read(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def wait_final(run_id, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = read(run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(0.3)
    raise AssertionError(f"flow run {run_id} did not end within {timeout} s")


def test_a_failed_served_run_runs_again_as_the_same_flow_run(served, cli_run):
    from prefect.deployments import run_deployment

    failed = run_deployment(f"run-pipeline/{served}", timeout=120, poll_interval=0.2)
    assert failed.state.is_failed(), failed.state
    code, out, err = cli_run("retry", str(failed.id)[:13])
    assert code == 0, err
    assert f"Flow run {failed.name} ({failed.id}) scheduled to run again" in out
    retried = wait_final(failed.id)
    assert retried.state.is_completed(), retried.state
    assert retried.run_count == 2
    # the node that completed the first time ran once; the failed one ran again
    from testnodes import CALLS

    assert CALLS[f"{served}-first"] == 1 and CALLS[f"{served}-second"] == 2
    # the run is final now: a second retry is refused, with the reason
    code, _, err = cli_run("retry", failed.name)
    assert code == 2 and "is completed: only a failed, crashed or cancelled run is retried" in err


def test_a_run_without_a_deployment_is_not_retried(flow, cli_run):
    name = f"local-{uuid.uuid4().hex[:8]}"
    state = asyncio.run(flow(definition=definition(name, name), return_state=True))
    assert state.is_failed()
    code, _, err = cli_run("retry", str(state.state_details.flow_run_id))
    assert code == 2 and "has no deployment, so nothing would pick a retry up" in err
    code, _, err = cli_run("retry", "no-such-run-name")
    assert code == 2 and "Flow run not found: no-such-run-name" in err


@pytest.mark.parametrize("ended", ["Crashed", "Cancelled"])
def test_a_crashed_or_cancelled_run_is_retried_too(served, cli_run, ended):
    """A run whose process died (marked Crashed) or that someone cancelled runs again, taking
    what completed, as a failed one does."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.states import Cancelled, Crashed

    run = run_deployment(f"run-pipeline/{served}", timeout=120, poll_interval=0.2)
    assert run.state.is_failed(), run.state  # the second node failed: a run with something to retry
    state = {"Crashed": Crashed, "Cancelled": Cancelled}[ended](message=f"marked {ended} by the test")
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(run.id, state, force=True)
    assert read(run.id).state.name == ended
    code, out, err = cli_run("retry", str(run.id))
    assert code == 0, err
    retried = wait_final(run.id)
    assert retried.state.is_completed() and retried.run_count == 2, retried.state
    from testnodes import CALLS

    assert CALLS[f"{served}-first"] == 1 and CALLS[f"{served}-second"] == 2
