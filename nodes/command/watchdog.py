"""One small process per opsflow process that stops the programs it ran when it is SIGKILLed.

A SIGKILLed (or OOM-killed) worker runs no `atexit` hook, and `PR_SET_PDEATHSIG` reaches
only the direct child: a grandchild the program forked would run on, unwatched. So the
first `command` node starts this watchdog, in a session of its own, reading a pipe from
this process: `+PGID` when a program's group starts, `-PGID` when it is gone. When the
pipe closes while groups are still listed (this process died), it SIGTERMs each, and
SIGKILLs what is left after a grace. A group's id is not reused while any member lives,
so the watchdog never signals a stranger.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading

__all__ = ["WATCHDOG_GRACE_SECONDS", "unwatch", "watch", "watchdog_pid"]

WATCHDOG_GRACE_SECONDS = 2.0

# run with -I -S: no site, no environment, nothing but the standard library
_CODE = r"""
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
def alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except OSError:
        return False
for pgid in list(groups):
    try:
        os.killpg(pgid, signal.SIGTERM)
    except OSError:
        groups.discard(pgid)
end = time.monotonic() + float(sys.argv[1])
while groups and time.monotonic() < end:
    groups = {pgid for pgid in groups if alive(pgid)}
    time.sleep(0.05)
for pgid in groups:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
"""

_LOCK = threading.Lock()
_state: dict[str, object] = {}  # "pid": the process it was started for, "fd": its pipe, "proc"


def _pipe() -> int | None:
    """The watchdog's pipe, starting it if this process has none yet (after a fork: a new one)."""
    with _LOCK:
        if _state.get("pid") == os.getpid():
            return _state.get("fd")  # type: ignore[return-value]
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _CODE, str(WATCHDOG_GRACE_SECONDS)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a kill of this process's group does not take it along
                close_fds=True,
            )
        except OSError:
            _state.update(pid=os.getpid(), fd=None)
            return None
        assert proc.stdin is not None
        _state.update(pid=os.getpid(), fd=proc.stdin.fileno(), proc=proc)
        return proc.stdin.fileno()


@atexit.register
def _let_go() -> None:
    """At a normal exit the pipe closes with no group listed: the watchdog ends as well."""
    proc = _state.get("proc")
    if isinstance(proc, subprocess.Popen) and _state.get("pid") == os.getpid():
        with contextlib.suppress(OSError):
            proc.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=WATCHDOG_GRACE_SECONDS + 1)


def _tell(line: str) -> None:
    fd = _pipe()
    if fd is None:
        return
    with contextlib.suppress(OSError):  # the watchdog is gone: the other safeguards still hold
        os.write(fd, line.encode())


def watch(pgid: int) -> None:
    """Have the watchdog stop group `pgid` if this process dies before `unwatch(pgid)`."""
    _tell(f"+{pgid}\n")


def unwatch(pgid: int) -> None:
    """Group `pgid` is gone (or stopped): nothing left for the watchdog to do about it."""
    _tell(f"-{pgid}\n")


def watchdog_pid() -> int | None:
    """The pid of this process's watchdog, once a program has started it."""
    proc = _state.get("proc") if _state.get("pid") == os.getpid() else None
    return proc.pid if isinstance(proc, subprocess.Popen) else None
