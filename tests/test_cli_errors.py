"""The real `pipeline` command in a subprocess: an expected failure is one line on stderr, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.ports import free_port

pytestmark = pytest.mark.timeout(240)


def pipeline(*args: str, api: str | None, timeout: float = 180) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    if api:
        env["PREFECT_API_URL"] = api
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def write(tmp_path, name: str, nodes: list[dict], **top) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "version": "1.0", "nodes": nodes, **top}))
    return str(path)


def assert_one_line(done: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert text in done.stderr, done.stderr[-3000:]


def test_failed_nodes_print_no_traceback_and_say_failed_once(prefect_api, tmp_path):
    port = free_port()
    path = write(
        tmp_path,
        "fails-quietly",
        [
            {
                "id": "hook",
                "type": "notify",
                "config": {"driver": "webhook", "url": f"http://127.0.0.1:{port}/x"},
            },
            {"id": "after", "type": "transform", "config": {"expression": "`1`"}},
        ],
        defaults={"max_retries": 1, "retry_delay_seconds": 0.1},
    )
    done = pipeline("run", "--config", path, api=prefect_api)
    assert_one_line(done, 1, "Pipeline failed: node 'hook'")
    assert (done.stdout + done.stderr).count("Pipeline failed:") == 1, done.stderr
    assert "✗ Pipeline failed" in done.stdout
    assert "▶ notify hook … waiting: retry 1/1 in " in done.stderr
    assert "--- transform (after) ---\n  (skipped) run failed at node 'hook'" in done.stdout
    verbose = pipeline("run", "--config", path, "-v", api=prefect_api)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_a_missing_secret_block_is_one_line(prefect_api, tmp_path):
    path = write(
        tmp_path,
        "needs-a-block",
        [
            {
                "id": "hook",
                "type": "notify",
                "config": {"driver": "webhook", "url": "${secret:no-such-block-here}"},
            }
        ],
    )
    done = pipeline("run", "--config", path, api=prefect_api)
    assert_one_line(done, 1, "secret block 'no-such-block-here' could not be loaded")
    assert (
        len([line for line in done.stderr.splitlines() if "no-such-block-here" in line]) == 2
    )  # progress + error


@pytest.mark.parametrize("args", [["run", "-d", "health-check"], ["runs"], ["show", "abcd1234"]])
def test_an_unreachable_prefect_api_is_one_line(args):
    api = f"http://127.0.0.1:{free_port()}/api"
    done = pipeline(*args, api=api, timeout=120)
    assert_one_line(done, 1, f"Cannot reach the Prefect API at {api}")
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_approve_a_run_that_is_not_paused_and_run_refs(prefect_api, tmp_path):
    path = write(
        tmp_path, "done-already", [{"id": "t", "type": "transform", "config": {"expression": "`1`"}}]
    )
    done = pipeline("run", "--config", path, "--json", api=prefect_api)
    assert done.returncode == 0, done.stderr
    run_id = json.loads(done.stdout)["run_id"]
    refused = pipeline("approve", run_id, api=prefect_api)
    assert_one_line(refused, 2, f"Flow run {run_id} is not waiting for an approval (it is Completed)")
    assert len(refused.stderr.strip().splitlines()) == 1
    by_prefix = pipeline("show", run_id[:13], api=prefect_api)
    assert by_prefix.returncode == 0 and f"Run ID: {run_id}" in by_prefix.stdout, by_prefix.stderr
    name = f"done-already-{run_id.replace('-', '')[:8]}"
    by_name = pipeline("logs", name, api=prefect_api)
    assert by_name.returncode == 0, by_name.stderr


def test_a_reader_that_stops_early_is_not_an_error(prefect_api):
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "run", "-d", "health-check"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    for _ in range(3):  # what `| head -3` reads
        process.stdout.readline()
    process.stdout.close()
    _, err = process.communicate(timeout=180)
    err = err.decode()
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert "FAILED" not in err and process.returncode == 0, err  # the console notification fails no node
