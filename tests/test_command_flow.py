"""The `command` node through the real flow on the session's Prefect server: a definition file
whose stage runs a script beside it, checks its artifact and feeds its JSON to the next node."""

from __future__ import annotations

import json
import re
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from support.processes import forker, pids_from, wait_dead

pytestmark = pytest.mark.timeout(180)

BUILD = """
import json, os, sys
print("building for", sys.argv[2], file=sys.stderr, flush=True)
os.makedirs("dist", exist_ok=True)
modules = [{"name": "api", "size": 3}, {"name": "web", "size": 5}]
with open("dist/modules.json", "w") as f:
    json.dump({"modules": modules}, f)
print("almost done", file=sys.stderr, flush=True)
print(json.dumps({"count": len(modules), "environment": sys.argv[2]}))
"""
SCHEMA = {
    "type": "object",
    "required": ["modules"],
    "properties": {"modules": {"type": "array", "items": {"required": ["name"]}}},
}


def write_pipeline(root: Path, nodes: list[dict]) -> Path:
    (root / "scripts").mkdir()
    (root / "schemas").mkdir()
    (root / "pipeline").mkdir()
    (root / "scripts" / "build.py").write_text(textwrap.dedent(BUILD))
    (root / "schemas" / "modules.schema.json").write_text(json.dumps(SCHEMA))
    path = root / "stages.json"
    path.write_text(json.dumps({"name": f"command-{uuid.uuid4().hex[:6]}", "version": "1.0", "nodes": nodes}))
    return path


def test_a_command_stage_runs_end_to_end_through_the_flow(run, tmp_path):
    path = write_pipeline(
        tmp_path,
        [
            {
                "id": "build",
                "type": "command",
                "config": {
                    "command": ["python3", "../scripts/build.py", "--env", "{{ run.environment }}"],
                    "cwd": "pipeline",
                    "artifacts": [{"path": "dist/modules.json", "schema": "schemas/modules.schema.json"}],
                    "output": "json",
                },
                "next": "count",
            },
            {"id": "count", "type": "transform", "config": {"source_node": "build", "extract": "parsed"}},
        ],
    )
    state, result = run(str(path), environment="staging")
    assert state.is_completed() and result["status"] == "completed", result["error"]
    build = result["node_results"]["build"]
    out = build["output"]
    assert out["exit_code"] == 0 and out["cwd"] == str(tmp_path / "pipeline")
    assert out["parsed"] == {"count": 2, "environment": "staging"}
    assert out["stderr"] == "building for staging\nalmost done\n"
    assert [a["path"] for a in out["artifacts"]] == ["dist/modules.json"] and out["artifacts"][0]["valid"]
    assert out["cpu_seconds"] is not None and out["cpu_seconds"] >= 0
    assert out["peak_rss_bytes"] is None or out["peak_rss_bytes"] > 0
    assert build["summary"].startswith("command: python3 ../scripts/build.py exited 0 in ")
    assert build["summary"].endswith("1 artifact valid, JSON output")
    assert result["node_results"]["count"]["output"] == {"count": 2, "environment": "staging"}

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from flows.history import flush_client_queues

    flush_client_queues()
    with get_client(sync_client=True) as client:
        run_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(result["run_id"])]))
        logs = client.read_logs(log_filter=run_filter)
    lines = {(log.message, log.level) for log in logs if log.task_run_id is not None}
    # each line in the task run's logs: stdout at INFO, stderr at WARNING
    assert ('{"count": 2, "environment": "staging"}', 20) in lines and ("almost done", 30) in lines


def test_a_failing_stage_fails_the_run_with_its_exit_code_and_stderr(run, tmp_path):
    path = write_pipeline(
        tmp_path,
        [
            {
                "id": "build",
                "type": "command",
                "retries": 1,
                "retry_delay_seconds": 0,
                "config": {"shell": "echo 'deploy key rejected' >&2; exit 7", "retry_on_exit_codes": [75]},
            }
        ],
    )
    state, result = run(str(path))
    assert state.is_failed() and result["status"] == "failed"
    failed = result["node_results"]["build"]
    assert failed["attempts"] == 1  # 7 is not among the retryable codes
    assert failed["summary"] == "node 'build': exit code 7"
    assert result["error"].startswith("node 'build': exit code 7")
    assert "deploy key rejected" in result["error"]


def test_the_node_timeout_in_the_flow_kills_the_stage_and_its_grandchild(run, tmp_path):
    program, pids_file = forker(tmp_path)
    definition = {
        "name": "command-timeout",
        "version": "1.0",
        "nodes": [
            {
                "id": "slow",
                "type": "command",
                "timeout_seconds": 3,
                "config": {"command": ["python3", program, str(pids_file)], "kill_grace_seconds": 1},
            }
        ],
    }
    started = time.monotonic()
    state, result = run(definition)
    # the node's own kill at its deadline says how long it ran ("3.0 s"); the flow's says "3 s"
    assert state.is_failed() and re.search(r"timed out after 3(\.\d)? s", result["error"]), result["error"]
    pids = pids_from(pids_file, seconds=1)
    assert wait_dead(pids) == [], f"still alive {time.monotonic() - started:.1f} s after the run started"
