"""definitions/examples/release.json through the real `pipeline` command: a release goes live, and one
that does not come up is rolled back (the deploy undone, then the build), the failure still its error.

The target directory is served over HTTP on 127.0.0.1 as the "servers" verify checks; the
approval is answered with the real `pipeline approve`.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "definitions" / "examples" / "release.json"
BUILT = ROOT / "examples" / "release" / "build" / "release.json"

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def site(tmp_path):
    """The target directory, served over HTTP: (directory, health URL)."""
    directory = tmp_path / "site"
    directory.mkdir()
    handler = functools.partial(QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield directory, f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


def paused_run(trace: str, timeout: float = 120):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=trace[:8]))
            )
        paused = [r for r in runs if r.state and r.state.is_paused()]
        if paused:
            return paused[0]
        time.sleep(0.3)
    raise AssertionError(f"no paused run for trace {trace} within {timeout} s")


def release(payload: dict, prefect_api: str, cwd: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """`pipeline run -c release.json --payload ... --json`, its approval answered yes."""
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    trace = uuid.uuid4().hex
    command = [sys.executable, "-m", "deployments.cli", "run", "-c", str(RELEASE), "--json"]
    command += ["--payload", json.dumps(payload), "--trace-id", trace]
    with subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            paused = paused_run(trace)
            answer = [
                sys.executable,
                "-m",
                "deployments.cli",
                "approve",
                str(paused.id),
                "--by",
                "release-test",
            ]
            approved = subprocess.run(answer, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            assert approved.returncode == 0, approved.stderr
            out, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
    done = subprocess.CompletedProcess(command, proc.returncode, out, err)
    return done, json.loads(out)


def test_a_release_goes_live_and_one_that_does_not_come_up_is_rolled_back(prefect_api, site, tmp_path):
    target, health_url = site
    params = {"target": str(target), "health_url": health_url}
    done, result = release({"version": "1.2.0", **params}, prefect_api, tmp_path)
    assert done.returncode == 0, done.stderr
    assert result["status"] == "completed", result["error"]
    assert result["executed_nodes"] == [
        "validate", "build", "approve", "approved", "deploy", "verify", "healthy", "notify"
    ]  # fmt: skip
    assert result["node_results"]["build"]["output"]["artifacts"][0]["valid"] is True
    # nothing failed: the compensation nodes are on the record as not needed
    assert result["skipped_nodes"] == ["rollback", "remove_build"]
    assert result["node_results"]["rollback"]["skip_reason"] == "rollback not needed: the run did not fail"
    assert json.loads((target / "release.json").read_text())["version"] == "1.2.0"
    assert "release: 1.2.0 is live in development" in done.stderr + done.stdout

    done, result = release(
        {"version": "1.3.0", "simulate_failure": "unhealthy", **params}, prefect_api, tmp_path
    )
    assert done.returncode != 0 and result["status"] == "failed"
    # the original failure stays the run's error; the rollback ran newest first: deploy, then build
    assert result["error"].startswith("node 'healthy': exit code 1")
    assert "verify: health is critical after the deploy" in result["error"]
    assert result["executed_nodes"][-3:] == ["healthy", "rollback", "remove_build"]
    assert result["node_results"]["rollback"]["output"]["parsed"] == {"rolled_back_to": "1.2.0"}
    assert json.loads((target / "release.json").read_text())["version"] == "1.2.0"
    assert (target / "health").read_text() == "ok\n" and not BUILT.exists()
    # the definition's own on_failure notification tells the failure and the rollback
    told = done.stderr + done.stdout
    assert "release: 1.3.0 failed in development" in told
    assert "rolled back: rollback, remove_build" in told


def test_describe_shows_which_nodes_undo_which(cli_run):
    code, out, err = cli_run("describe", str(ROOT / "definitions" / "examples" / "release.json"))
    assert code == 0, err
    deploy = out.split("[command] deploy\n")[1].split("\n  6.")[0]
    assert "     on_failure (compensation): rollback\n     → next: verify" in deploy
    rollback = out.split("[command] rollback\n")[1]
    assert "     → runs only in a rollback (undoes deploy)" in rollback.split("\n  10.")[0]
