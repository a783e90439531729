"""The hold-out run of issue 19, end to end on the session's Prefect server, as a user runs it.

A project directory (tests/fixtures/holdout/: a definition, four Python stages, a JSON Schema)
served as `pipeline serve` serves it: `build` leaves a JSON artifact checked against the
schema, `deploy` exits 3 until its target is configured. The first run fails there, with the
exit code and the stderr line in the run's state and in `pipeline show`; the user creates the
file and runs `pipeline retry RUN`: the same flow run completes, and the stages that completed
the first time (counted by the lines each stage appends to runs/<stage>.log) do not run again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from pathlib import Path

import pytest
from support.serving import served_in_process
from support.waiting import wait_for

pytestmark = pytest.mark.timeout(240)

PROJECT = Path(__file__).resolve().parent / "fixtures" / "holdout"
STAGES = ("prepare", "build", "deploy", "report")
STDERR_LINE = "deploy: no target configured (create config/target.json)"


@pytest.fixture
def project(prefect_api, tmp_path, monkeypatch):
    """The hold-out project copied to a directory of its own, its definition under a fresh name, served."""
    root = tmp_path / "project"
    shutil.copytree(PROJECT, root)
    definition = json.loads((root / "holdout.json").read_text())
    definition["name"] = f"holdout-{uuid.uuid4().hex[:8]}"
    (root / "holdout.json").unlink()
    (root / f"{definition['name']}.json").write_text(json.dumps(definition))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(root))
    with served_in_process([definition["name"]]):
        yield root, definition["name"]


def runs_of(root: Path) -> dict[str, int]:
    """How many times each stage ran, from the lines it appended to runs/<stage>.log."""
    logs = {stage: root / "runs" / f"{stage}.log" for stage in STAGES}
    return {stage: len(log.read_text().splitlines()) if log.exists() else 0 for stage, log in logs.items()}


def read(run_id):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(run_id)


def test_a_failed_stage_is_fixed_and_the_run_retried_without_repeating_what_completed(project, cli_run):
    from prefect.deployments import run_deployment

    root, name = project
    failed = run_deployment(f"run-pipeline/{name}", timeout=180, poll_interval=0.3)
    assert failed.state.is_failed(), failed.state
    assert runs_of(root) == {"prepare": 1, "build": 1, "deploy": 1, "report": 0}
    # the failure, with its exit code and the line the stage wrote to stderr
    assert failed.state.message == (
        f"Pipeline failed: node 'deploy': exit code 3\nstderr (last 1 lines):\n  {STDERR_LINE}"
    )
    code, shown, err = cli_run("show", str(failed.id))
    assert code == 0, err
    assert "--- command (deploy) ---\n  Errors: node 'deploy': exit code 3" in shown
    assert STDERR_LINE in shown and "--- command (report) ---\n  (skipped)" in shown
    assert shown.rstrip().endswith(
        f"✗ Pipeline failed: node 'deploy': exit code 3\nstderr (last 1 lines):\n  {STDERR_LINE}"
    )
    # the artifact was checked against its schema: valid, with the hash of the file the stage wrote
    code, as_json, err = cli_run("show", str(failed.id), "--json")
    assert code == 0, err
    build = json.loads(as_json)["node_results"]["build"]["output"]
    artifact = build["artifacts"][0]
    assert artifact["path"] == "dist/modules.json" and artifact["valid"] is True
    assert artifact["sha256"] == hashlib.sha256((root / "dist" / "modules.json").read_bytes()).hexdigest()

    # what the user does about it: configure the target, then retry the same run
    (root / "config").mkdir()
    (root / "config" / "target.json").write_text(json.dumps({"host": "staging-01"}))
    code, out, err = cli_run("retry", str(failed.id))
    assert code == 0, err
    assert f"Flow run {failed.name} ({failed.id}) scheduled to run again" in out
    retried = wait_for(
        lambda: (run := read(failed.id)).state and run.state.is_final() and run,
        timeout=180,
        what=f"retried flow run {failed.id} to end",
    )
    assert retried.state.is_completed(), retried.state
    assert retried.run_count == 2
    # prepare and build completed the first time: not run again; deploy ran twice; report once
    assert runs_of(root) == {"prepare": 1, "build": 1, "deploy": 2, "report": 1}

    code, shown, err = cli_run("show", str(failed.id))
    assert code == 0, err
    assert shown.rstrip().endswith("✓ Pipeline completed successfully")
    table = shown.split("Result artifact (")[1].split("\n\n")[0].splitlines()[1:]
    statuses = {row.split()[0]: row.split()[2] for row in table[1:]}
    assert statuses == dict.fromkeys(STAGES, "completed"), table
    report = shown.split("--- command (report) ---\n")[1].split("\n\n")[0]
    assert report.startswith("  Command: python3 stages/report.py staging-01 api,worker,web\n  Exit code: 0")
    assert "\n  Stdout (last line): deployed api,worker,web to staging-01\n" in report
    # deploy took the build's stored output (`--modules 3`) and report took deploy's fresh one
    code, as_json, err = cli_run("show", str(failed.id), "--json")
    nodes = json.loads(as_json)["node_results"]
    assert nodes["deploy"]["output"]["parsed"] == {"host": "staging-01", "deployed": ["api", "worker", "web"]}
    assert nodes["report"]["output"]["stdout"] == "deployed api,worker,web to staging-01\n"
