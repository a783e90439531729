"""Ctrl-C during `pipeline run`: the run is cancelled in Prefect, one line is printed, exit 130.

The real command runs in its own process group and gets SIGINT as a terminal sends it
(to the whole group), in both modes: the embedded local server and PREFECT_API_URL.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.ports import free_port

pytestmark = pytest.mark.timeout(300)

# a bound on the wait, not a timing assertion: before the fix the command took minutes
EXIT_BOUND_SECONDS = 30


def definition(tmp_path: Path, name: str, url: str, **defaults) -> str:
    node = {
        "id": "hook",
        "type": "notify",
        "config": {"driver": "webhook", "url": url, "timeout_seconds": 120},
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "version": "1.0", "defaults": defaults, "nodes": [node]}))
    return str(path)


_STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_leftovers():
    """A command that failed the test is killed with its children (the local server has its own session)."""
    yield
    import psutil

    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            with contextlib.suppress(psutil.Error):
                for child in psutil.Process(process.pid).children(recursive=True):
                    child.kill()
            process.kill()
            process.wait(timeout=30)


def start(path: str, env: dict[str, str], stderr_file: Path) -> subprocess.Popen:
    with stderr_file.open("w") as stderr:  # the child has its own copy of the descriptor
        process = subprocess.Popen(
            [sys.executable, "-m", "deployments.cli", "run", "--config", path],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,  # its own group, so the signal below reaches what a terminal's would
        )
    _STARTED.append(process)
    return process


def wait_for(stderr_file: Path, text: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in stderr_file.read_text():
            return
        assert process.poll() is None, stderr_file.read_text()[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"never saw {text!r}: {stderr_file.read_text()[-3000:]}")


def interrupt(process: subprocess.Popen, times: int = 1) -> int:
    for _ in range(times):
        os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=EXIT_BOUND_SECONDS)


def other_lines(stderr_file: Path) -> list[str]:
    return [line for line in stderr_file.read_text().splitlines() if not line.startswith("▶")]


def run_state(api: str, name: str) -> tuple[str, list[str]]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=name)))
        assert len(runs) == 1, runs
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [runs[0].id]}))
        return runs[0].state.type.value, [t.state.type.value for t in tasks]


@pytest.fixture
def hanging_url():
    """A server that accepts connections and never answers: a node stuck in its request."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook"


def test_ctrl_c_with_an_api_cancels_in_flight_work(prefect_api, tmp_path, hanging_url):
    name = f"ctrl-c-api-{os.getpid()}"
    path = definition(tmp_path, name, hanging_url, timeout_seconds=300)
    stderr_file = tmp_path / "stderr.txt"
    process = start(path, {**os.environ, "PREFECT_API_URL": prefect_api}, stderr_file)
    wait_running(prefect_api, name, process, stderr_file)
    assert interrupt(process) == 130
    lines = other_lines(stderr_file)
    assert len(lines) == 1 and lines[0].startswith("Interrupted: cancelling flow run "), lines
    state, tasks = run_state(prefect_api, name)
    assert state in ("CANCELLED", "CRASHED")
    assert tasks and all(t in ("CRASHED", "CANCELLED", "FAILED") for t in tasks), tasks


def test_ctrl_c_on_the_embedded_server_during_retries(tmp_path):
    name = f"ctrl-c-local-{os.getpid()}"
    path = definition(
        tmp_path, name, f"http://127.0.0.1:{free_port()}/x", max_retries=20, retry_delay_seconds=2
    )
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    stderr_file = tmp_path / "stderr.txt"
    process = start(path, env, stderr_file)
    wait_for(stderr_file, "waiting: retry 2/20", process, timeout=240)
    assert interrupt(process) == 130
    lines = other_lines(stderr_file)
    assert len(lines) == 1 and lines[0].startswith("Interrupted: cancelling flow run "), lines
    assert "Traceback" not in stderr_file.read_text()
    db = sqlite3.connect(home / "prefect.db")
    flow_runs = db.execute(
        "select state_type, tags from flow_run where name like ?", (f"{name}-%",)
    ).fetchall()
    assert [state for state, _ in flow_runs] == ["CANCELLED"], flow_runs
    assert set(json.loads(flow_runs[0][1])) >= {"opsflow", name, "cli"}
    tasks = [row[0] for row in db.execute("select state_type from task_run where name = 'hook'")]
    assert tasks and "RUNNING" not in tasks and "SCHEDULED" not in tasks, tasks


def wait_running(api: str, name: str, process: subprocess.Popen, stderr_file: Path) -> None:
    """Until the run exists and is Running: its node is then inside its request."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if run_state(api, name)[0] == "RUNNING":
                time.sleep(1.5)
                return
        except AssertionError:
            pass
        assert process.poll() is None, stderr_file.read_text()
        time.sleep(0.3)
    raise AssertionError(f"{name} never ran: {stderr_file.read_text()[-3000:]}")


def test_a_second_ctrl_c_exits_at_once(prefect_api, tmp_path, hanging_url):
    name = f"ctrl-c-twice-{os.getpid()}"
    path = definition(tmp_path, name, hanging_url)
    stderr_file = tmp_path / "stderr.txt"
    process = start(path, {**os.environ, "PREFECT_API_URL": prefect_api}, stderr_file)
    wait_running(prefect_api, name, process, stderr_file)
    os.killpg(process.pid, signal.SIGINT)
    wait_for(stderr_file, "Interrupted: cancelling", process, timeout=10)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    # 130 from the handler; -SIGINT when it lands while the interpreter is finalizing (its handlers
    # are reset then): a shell reports both as 130
    assert process.wait(timeout=EXIT_BOUND_SECONDS) in (130, -signal.SIGINT)


def test_ctrl_c_while_paused_for_an_approval(prefect_api, tmp_path):
    name = f"ctrl-c-paused-{os.getpid()}"
    path = tmp_path / f"{name}.json"
    ask = {"id": "ask", "type": "approval", "config": {"poll_seconds": 1, "timeout_seconds": 300}}
    path.write_text(json.dumps({"name": name, "version": "1.0", "nodes": [ask]}))
    stderr_file = tmp_path / "stderr.txt"
    process = start(str(path), {**os.environ, "PREFECT_API_URL": prefect_api}, stderr_file)
    wait_for(stderr_file, "waiting: approval pending", process)
    deadline = time.monotonic() + 60
    while run_state(prefect_api, name)[0] != "PAUSED" and time.monotonic() < deadline:
        time.sleep(0.3)
    assert interrupt(process) == 130
    assert run_state(prefect_api, name)[0] == "CANCELLED"  # not Paused forever


def test_the_local_server_ends_with_a_killed_command(tmp_path):
    """The embedded server has its own session (Ctrl-C is the command's); it still dies with it."""
    import psutil

    path = definition(
        tmp_path, "killed", f"http://127.0.0.1:{free_port()}/x", max_retries=20, retry_delay_seconds=2
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    stderr_file = tmp_path / "stderr.txt"
    process = start(path, env, stderr_file)
    wait_for(stderr_file, "waiting: retry 1/20", process, timeout=240)
    servers = psutil.Process(process.pid).children(recursive=True)
    assert servers, "no local server"
    process.kill()  # no atexit, no signal of the terminal's reaches the server's session
    process.wait(timeout=30)
    _, alive = psutil.wait_procs(servers, timeout=EXIT_BOUND_SECONDS)
    for leftover in alive:
        leftover.kill()
    assert not alive
