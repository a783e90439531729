"""`pipeline run-stage`, `--log-level`, and the progress line of a node waiting for an approval."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.timeout(240)


TWO_STAGES = {
    "name": "two-stages",
    "version": "1.0",
    "nodes": [
        {"id": "pick", "type": "transform", "config": {"mapping": {"host": "payload.host"}}, "next": "say"},
        {
            "id": "say",
            "type": "transform",
            "config": {"mapping": {"line": "join('', ['host ', nodes.pick.host])"}},
        },
    ],
}


def test_run_stage_takes_upstream_outputs_from_a_past_run(cli_run, prefect_api, tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps(TWO_STAGES))
    code, out, err = cli_run("run", "--config", str(path), "--payload", '{"host": "db-07"}', "--json")
    assert code == 0, err
    run_id = json.loads(out)["run_id"]
    code, out, err = cli_run("run-stage", "say", "--config", str(path), "--from-run", run_id[:12], "--json")
    assert code == 0, err
    assert json.loads(out)["output"] == {"line": "host db-07"}
    code, out, err = cli_run("run-stage", "pick", "-c", str(path), "--payload", '{"host": "web-3"}')
    assert code == 0, err
    assert out.startswith("--- transform (pick) ---\n") and '"host": "web-3"' in out


def test_run_stage_usage_errors(cli_run, prefect_api, tmp_path):
    code, _, err = cli_run("run-stage", "ghost", "-d", "health-check")
    assert code == 2 and err.startswith("Unknown node id: ghost (nodes: metrics,")
    code, _, err = cli_run("run-stage", "metrics")
    assert code == 2 and "Specify --definition NAME or --config PATH" in err
    path = tmp_path / "asks.json"
    path.write_text(json.dumps({"version": "1.0", "nodes": [{"id": "ask", "type": "approval"}]}))
    code, _, err = cli_run("run-stage", "ask", "-c", str(path))
    assert code == 2 and "is an approval" in err
    code, _, err = cli_run("run-stage", "metrics", "-d", "health-check", "--from-run", "nope-not-a-run")
    assert code == 2 and "Flow run not found: nope-not-a-run" in err


def run_command(*args: str, api: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api}
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_log_level_shows_what_it_says(prefect_api, tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps(TWO_STAGES))
    host = ["--payload", '{"host": "h1"}']
    quiet = run_command("run", "-c", str(path), *host, api=prefect_api)
    info = run_command("run", "-c", str(path), *host, "--log-level", "info", api=prefect_api)
    assert quiet.returncode == info.returncode == 0, info.stderr
    assert "Beginning flow run" in info.stderr and "Beginning flow run" not in quiet.stderr
    bad = run_command("run", "-c", str(path), "--log-level", "loud", api=prefect_api)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_a_waiting_approval_shows_the_command_that_answers_it(prefect_api, tmp_path):
    path = tmp_path / "asks.json"
    nodes = [
        {
            "id": "ask",
            "type": "approval",
            "config": {"poll_seconds": 1, "timeout_seconds": 120},
            "next": "after",
        },
        {"id": "after", "type": "transform", "config": {"expression": "nodes.ask.approved"}},
    ]
    path.write_text(json.dumps({"name": "asks", "version": "1.0", "nodes": nodes}))
    stderr_file = tmp_path / "stderr.txt"
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    with stderr_file.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "run", "-c", str(path)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            text=True,
        )
    pattern = re.compile(r"waiting: approval pending for run (\S+): pipeline approve (\S+) \[--reject\]")
    deadline, match = time.monotonic() + 150, None
    while match is None and time.monotonic() < deadline and process.poll() is None:
        match = pattern.search(stderr_file.read_text())
        time.sleep(0.3)
    assert match and match.group(1) == match.group(2), stderr_file.read_text()
    assert stderr_file.read_text().count("▶ approval ask … waiting") == 1
    answered = run_command("approve", match.group(1), "--comment", "fine", api=prefect_api)
    assert answered.returncode == 0 and f"Approved flow run {match.group(1)}" in answered.stdout, (
        answered.stderr
    )
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, stderr_file.read_text()
    assert "✓ Pipeline completed successfully" in out
