"""Programs that fork and sleep, and bounded checks that their processes are gone."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

# forks a grandchild, writes both pids, then sleeps (optionally deaf to SIGTERM, or exits at once)
FORKER = """
import os, signal, sys, time
if "deaf" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    time.sleep(120)
    os._exit(0)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
print("forked", flush=True)
if "exit" in sys.argv:
    sys.exit(0)
time.sleep(120)
"""


def forker(tmp_path: Path) -> tuple[str, Path]:
    path = tmp_path / "forker.py"
    path.write_text(FORKER)
    return str(path), tmp_path / "pids"


def pids_from(path: Path, seconds: float = 30.0) -> list[int]:
    end = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.02)
    return [int(p) for p in path.read_text().split()]


def dead(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by init
    except psutil.NoSuchProcess:
        return True


def wait_dead(pids: list[int], seconds: float = 20.0) -> list[int]:
    """The pids still alive after `seconds` (bounded polling); kills them so no test leaks one."""
    end = time.monotonic() + seconds
    alive = [p for p in pids if not dead(p)]
    while alive and time.monotonic() < end:
        time.sleep(0.05)
        alive = [p for p in alive if not dead(p)]
    for pid in alive:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    return alive
