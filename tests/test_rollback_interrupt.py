"""Ctrl-C during `pipeline run` rolls nothing back: an interrupted run stops, it does not undo.

The real command gets SIGINT in its process group (as from a terminal) while a node after
one with a compensation node runs; the compensation never runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(300)


def task_states(name: str) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))
        if not runs:
            return {}
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [runs[0].id]}))
        # a task run just created may have no state yet
        states = {t.name: t.state.type.value if t.state else "PENDING" for t in tasks}
        return {"flow": runs[0].state.type.value if runs[0].state else "PENDING", **states}


def test_ctrl_c_runs_no_compensation(prefect_api, tmp_path):
    name = f"rollback-ctrl-c-{os.getpid()}"
    marker = tmp_path / "undone"

    def command(node_id: str, code: str, **fields) -> dict:
        config = {"command": ["python3", "-c", code], "kill_grace_seconds": 1}
        return {"id": node_id, "type": "command", "config": config, **fields}

    nodes = [
        command("first", "pass", next="second", on_failure=["undo"]),
        command("second", "import time; time.sleep(120)"),
        command("undo", f"open({str(marker)!r}, 'w')"),
    ]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "version": "1.0", "nodes": nodes}))
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    with (tmp_path / "stderr.txt").open("w") as stderr:  # the child has its own copy
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "run", "--config", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,  # its own group, so the signal below reaches what a terminal's would
        )
    try:
        deadline = time.monotonic() + 120
        while task_states(name).get("second") != "RUNNING":
            alive = process.poll() is None and time.monotonic() < deadline
            assert alive, (tmp_path / "stderr.txt").read_text()[-3000:]
            time.sleep(0.3)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130
    finally:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
    states = task_states(name)
    assert states["flow"] == "CANCELLED" and states["first"] == "COMPLETED", states
    assert "undo" not in states and not Path(marker).exists()
