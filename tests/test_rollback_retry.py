"""Rollback and `pipeline retry` together, on the session's server, for a served deployment.

A retry of the same flow run reuses what completed, except what a rollback undid (and
what was built on it): those run again, and a retry that fails again rolls back again.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from support.serving import served_in_process
from testnodes import CALLS, TEST_NODE_TYPES

import nodes

pytestmark = pytest.mark.timeout(300)


def definition(name: str, undo_failures: int = 0) -> dict:
    """start → build (undone by undo_build) → test → deploy, which fails twice, then passes."""

    def flaky(node_id: str, fail_times: int = 0, **fields) -> dict:
        config = {"key": f"{name}-{node_id}", "fail_times": fail_times}
        return {"id": node_id, "type": "flaky", "config": config, "retries": 0, **fields}

    return {
        "name": name,
        "version": "1.0",
        "nodes": [
            flaky("start", next="build"),
            flaky("build", next="test", on_failure=["undo_build"]),
            flaky("test", next="deploy"),
            flaky("deploy", fail_times=2),
            flaky("undo_build", fail_times=undo_failures),
        ],
    }


@pytest.fixture
def served(prefect_api, tmp_path, monkeypatch, request):
    for node_type, path in TEST_NODE_TYPES.items():
        monkeypatch.setitem(nodes.NODE_TYPES, node_type, path)
    name = f"rollback-retry-{uuid.uuid4().hex[:8]}"
    undo_failures = getattr(request, "param", 0)
    (tmp_path / f"{name}.json").write_text(json.dumps(definition(name, undo_failures)))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    with served_in_process([name]):
        yield name


def wait_final(run_id, seen_count: int, timeout: float = 120):
    """The flow run once it ended after attempt `seen_count` (its run_count)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            run = client.read_flow_run(run_id)
        if run.run_count >= seen_count and run.state and run.state.is_final():
            return run
        time.sleep(0.3)
    raise AssertionError(f"flow run {run_id} did not end attempt {seen_count} within {timeout} s")


def calls(name: str) -> dict[str, int]:
    return {n: CALLS.get(f"{name}-{n}", 0) for n in ("start", "build", "test", "deploy", "undo_build")}


# undo_build fails or not the first time: the results are marked before the compensation
# runs, so a failed one (the undo may not have happened) still makes a retry run build again
@pytest.mark.parametrize(
    ("served", "first_rollback"),
    [(0, "rolled back: undo_build"), (1, "rollback failed: undo_build")],
    indirect=["served"],
)
def test_a_retry_runs_again_what_the_rollback_undid_and_rolls_back_again(served, first_rollback, cli_run):
    from prefect.deployments import run_deployment

    failed = run_deployment(f"run-pipeline/{served}", timeout=120, poll_interval=0.2)
    assert failed.state.is_failed(), failed.state
    assert first_rollback in failed.state.message
    assert calls(served) == {"start": 1, "build": 1, "test": 1, "deploy": 1, "undo_build": 1}

    code, _, err = cli_run("retry", str(failed.id))
    assert code == 0, err
    again = wait_final(failed.id, 2)
    assert again.state.is_failed() and "rolled back: undo_build" in again.state.message
    # start is reused; build was undone, so it and test (built on it) ran again; undone again
    assert calls(served) == {"start": 1, "build": 2, "test": 2, "deploy": 2, "undo_build": 2}

    code, _, err = cli_run("retry", str(failed.id))
    assert code == 0, err
    done = wait_final(failed.id, 3)
    assert done.state.is_completed(), done.state
    assert calls(served) == {"start": 1, "build": 3, "test": 3, "deploy": 3, "undo_build": 2}
