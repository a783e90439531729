"""No program outlives its `command` node: the deadline, a stop, Ctrl-C, the end of the process
and its death each take down the whole process group (a forked grandchild too)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from support.processes import forker, pids_from, wait_dead

from nodes.base import NodeContext, RunInfo, Secrets
from nodes.errors import NodeError
from nodes.runtime import execute_node

pytestmark = pytest.mark.timeout(90)


def ctx(tmp_path: Path, **fields) -> NodeContext:
    return NodeContext(
        run=RunInfo(trace_id="kill", definition_dir=str(tmp_path)), secrets=Secrets(), **fields
    )


def test_the_deadline_kills_the_child_and_its_forked_grandchild(tmp_path):
    program, pids_file = forker(tmp_path)
    config = {"command": ["python3", program, str(pids_file)]}
    with pytest.raises(NodeError) as info:
        execute_node("stage", "command", config, ctx(tmp_path, deadline=time.monotonic() + 2))
    assert "timed out after" in info.value.message and info.value.retryable
    assert "its process group was stopped" in info.value.message
    assert "cpu_seconds" in info.value.details and "peak_rss_bytes" in info.value.details  # the report
    pids = pids_from(pids_file)
    assert len(pids) == 2 and wait_dead(pids) == []


def test_a_program_deaf_to_sigterm_gets_sigkill_after_the_grace(tmp_path):
    program, pids_file = forker(tmp_path)
    config = {"command": ["python3", program, str(pids_file), "deaf"], "kill_grace_seconds": 0.5}
    with pytest.raises(NodeError, match="timed out after"):
        execute_node("stage", "command", config, ctx(tmp_path, deadline=time.monotonic() + 2))
    assert wait_dead(pids_from(pids_file)) == []


def test_stop_kills_the_group_at_once(tmp_path):
    """What the flow does when an attempt is over (timed out, cancelled): it sets `ctx.stop`."""
    program, pids_file = forker(tmp_path)
    stop = threading.Event()

    def stop_when_started() -> None:
        pids_from(pids_file)
        stop.set()

    threading.Thread(target=stop_when_started, daemon=True).start()
    with pytest.raises(NodeError, match="stopped after .* the attempt was cancelled"):
        execute_node(
            "stage", "command", {"command": ["python3", program, str(pids_file)]}, ctx(tmp_path, stop=stop)
        )
    assert wait_dead(pids_from(pids_file)) == []


def test_processes_left_behind_by_a_program_that_exited_are_stopped(tmp_path, caplog):
    program, pids_file = forker(tmp_path)
    caplog.set_level(logging.INFO, logger="opsflow.nodes")
    result = execute_node(
        "stage", "command", {"command": ["python3", program, str(pids_file), "exit"]}, ctx(tmp_path)
    )
    assert result["output"]["exit_code"] == 0 and result["output"]["stdout"] == "forked\n"
    assert wait_dead(pids_from(pids_file)) == []
    assert any("left running were stopped" in r.getMessage() for r in caplog.records)


# runs one command node in a fresh interpreter; argv: how it ends, the forker, the pids file
DRIVER = """
import os, signal, sys, threading, time
from nodes.base import NodeContext, RunInfo
from nodes.runtime import execute_node

how, program, pids = sys.argv[1:4]

def when_started(then):
    def wait():
        while not os.path.exists(pids):
            time.sleep(0.02)
        then()
    threading.Thread(target=wait, daemon=True).start()

def node():
    config = {"command": [sys.executable, program, pids]}
    execute_node("stage", "command", config, NodeContext(run=RunInfo(trace_id="driver")))

if how == "ctrl-c":
    when_started(lambda: os.kill(os.getpid(), signal.SIGINT))
    try:
        node()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
elif how == "exit":  # the node still runs in a daemon thread when the interpreter exits
    started = threading.Event()
    when_started(started.set)
    threading.Thread(target=node, daemon=True).start()
    started.wait(30)
    from nodes.command.watchdog import watchdog_pid
    print(f"watchdog {watchdog_pid()}", file=sys.stderr, flush=True)
    print("exiting", flush=True)
elif how == "killed":
    when_started(lambda: os.kill(os.getpid(), signal.SIGKILL))
    node()
"""


def drive(tmp_path: Path, how: str, *extra: str) -> tuple[subprocess.CompletedProcess, list[int]]:
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    program, pids_file = forker(tmp_path)
    done = subprocess.run(
        [sys.executable, str(driver), how, program, str(pids_file), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    return done, pids_from(pids_file, seconds=1)


def test_ctrl_c_kills_the_group_before_the_interrupt_goes_on(tmp_path):
    done, pids = drive(tmp_path, "ctrl-c")
    assert done.stdout.strip() == "interrupted", done.stderr
    assert wait_dead(pids) == []


def test_the_interpreter_exiting_kills_a_group_its_node_thread_still_runs(tmp_path):
    done, pids = drive(tmp_path, "exit")
    assert done.returncode == 0 and done.stdout.strip() == "exiting", done.stderr
    assert wait_dead(pids) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_program_and_its_grandchild_die_with_a_killed_parent(tmp_path):
    """SIGKILL leaves the parent no say: the kernel kills the direct child (PR_SET_PDEATHSIG),
    and the watchdog, seeing its pipe close, stops the rest of the group (the grandchild)."""
    done, (child, grandchild) = drive(tmp_path, "killed")
    assert done.returncode == -9
    assert wait_dead([child]) == []
    assert wait_dead([grandchild]) == []


def test_the_watchdog_ends_with_a_process_that_ends_normally(tmp_path):
    """Nothing is left behind by the safeguard itself: after a run, the watchdog exits too."""
    done, pids = drive(tmp_path, "exit")
    assert done.returncode == 0, done.stderr
    assert wait_dead(pids) == []
    watchdog = int(done.stderr.split("watchdog ")[1].split()[0])  # the driver's own
    assert wait_dead([watchdog], seconds=5) == []
