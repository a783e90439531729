"""The shipped examples run as the README says, through the real `pipeline` command and the local server.

definitions/examples/stage-graph.json is a seed-002-style stage graph: Python stages with a
checked artifact, a JSON answer, and `--only`/`--skip`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGE_GRAPH = ROOT / "definitions" / "examples" / "stage-graph.json"

pytestmark = pytest.mark.timeout(300)


def pipeline(*args: str, cwd: Path, prefect_api: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_the_stage_graph_runs_its_stages_checks_the_artifact_and_reports(prefect_api, tmp_path):
    # run from elsewhere: cwd and schema paths are relative to the definition's directory
    done = pipeline(
        "run",
        "-c",
        str(STAGE_GRAPH),
        "--environment",
        "staging",
        "--json",
        cwd=tmp_path,
        prefect_api=prefect_api,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["executed_nodes"] == ["collect", "summarize", "report"]
    collect = result["node_results"]["collect"]["output"]
    (artifact,) = collect["artifacts"]
    assert (
        artifact["valid"] is True
        and artifact["path"] == "build/modules.json"
        and len(artifact["sha256"]) == 64
    )
    assert Path(collect["cwd"]) == ROOT / "examples" / "stages"
    assert result["node_results"]["summarize"]["output"]["parsed"] == {
        "environment": "staging",
        "modules": 3,
        "files": 50,
        "names": ["api", "worker", "web"],
    }
    assert "stage-graph: 3 modules for staging" in done.stderr + done.stdout


def test_only_and_skip_choose_the_stages(prefect_api, tmp_path):
    done = pipeline(
        "run", "-c", str(STAGE_GRAPH), "--skip", "report", "--json", cwd=tmp_path, prefect_api=prefect_api
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["executed_nodes"] == ["collect", "summarize"] and result["skipped_nodes"] == ["report"]
    done = pipeline(
        "run", "-c", str(STAGE_GRAPH), "--only", "collect", "--json", cwd=tmp_path, prefect_api=prefect_api
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["executed_nodes"] == ["collect"]
