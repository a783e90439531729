"""Run one program in its own process group: stream its output, sample its resources, and kill
the whole group at the deadline, on cancellation, on an error, or when this process exits.

No orphan outlives a run: the child starts a session of its own (its process group), so one
`killpg` reaches everything it forked; processes still in the group after the child exits are
stopped too. The direct child dies with this process (Linux `PR_SET_PDEATHSIG`), an `atexit`
hook kills every group still running when the interpreter exits (Prefect turns the SIGTERM
of a cancelled flow run into an exit), and when this process is SIGKILLed a watchdog
process stops the groups it left (`nodes.command.watchdog`). Killing is SIGTERM, then
SIGKILL after a grace.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nodes.command.watchdog import unwatch, watch

__all__ = ["MAX_LINE_CHARS", "MAX_TAIL_BYTES", "Outcome", "kill_group", "run_process"]

MAX_TAIL_BYTES = 64 * 1024  # of stdout and of stderr kept in the output
MAX_LINE_CHARS = 1000  # of one line sent to the log
_READ_CHUNK = 8192
# sampling starts fast (a short program still gets measured) and settles at the last step
_SAMPLE_STEPS = (0.01, 0.02, 0.05, 0.1, 0.2)
_KILL_WAIT_SECONDS = 5.0  # after SIGKILL, for the kernel to take the group down
_EXIT_GRACE_SECONDS = 2.0  # what the atexit hook allows a group between SIGTERM and SIGKILL
_PR_SET_PDEATHSIG = 1

_GROUPS: set[int] = set()  # process groups of programs running now
_GROUPS_LOCK = threading.Lock()


@dataclass
class Outcome:
    """How the program ended (`ended`: exited, timeout or stopped) and what it left behind."""

    ended: str
    exit_code: int | None
    stdout: bytes  # the last MAX_TAIL_BYTES (all of it, up to `keep_stdout`, in `full_stdout`)
    stderr: bytes
    stdout_truncated: bool
    stderr_truncated: bool
    full_stdout: bytes | None
    duration_s: float
    cpu_seconds: float | None
    peak_rss_bytes: int | None
    leftovers: int  # processes still in the group after the program exited (stopped)


class _Stream:
    """One pipe read to its end: the tail kept, each line handed on as it comes (cut if long)."""

    def __init__(self, name: str, pipe, on_line: Callable[[str, str], None], keep: int | None):
        self.name, self.pipe, self.on_line = name, pipe, on_line
        self.tail = bytearray()
        self.total = 0
        self.keep = keep
        self.full: bytearray | None = bytearray() if keep else None
        self.thread = threading.Thread(target=self._pump, name=f"opsflow-command-{name}", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        line, cut = bytearray(), False
        room = MAX_LINE_CHARS * 4  # bytes: a line of MAX_LINE_CHARS characters in any UTF-8
        try:
            while chunk := self.pipe.readline(_READ_CHUNK):
                self.total += len(chunk)
                self.tail += chunk
                if len(self.tail) > 2 * MAX_TAIL_BYTES:
                    del self.tail[:-MAX_TAIL_BYTES]
                if self.full is not None:
                    if len(self.full) + len(chunk) > (self.keep or 0):
                        self.full = None  # over the cap: the caller says so
                    else:
                        self.full += chunk
                left = room - len(line)
                cut = cut or len(chunk) > left
                line += chunk[: max(left, 0)]
                if chunk.endswith(b"\n"):
                    self._emit(line, cut)
                    line, cut = bytearray(), False
            if line:
                self._emit(line, cut)
        except (OSError, ValueError):  # the pipe was closed under us: this attempt is over
            pass
        finally:
            with contextlib.suppress(OSError):
                self.pipe.close()

    def _emit(self, raw: bytearray, cut: bool) -> None:
        text = bytes(raw).decode("utf-8", "replace").rstrip("\r\n")
        if cut or len(text) > MAX_LINE_CHARS:
            text = text[:MAX_LINE_CHARS].rstrip("\ufffd") + "…"
        try:
            self.on_line(self.name, text)
        except Exception:  # a log that fails never stops the read (the pipe would fill up)
            pass

    def result(self) -> tuple[bytes, bool, bytes | None]:
        tail = bytes(self.tail[-MAX_TAIL_BYTES:])
        truncated = self.total > len(tail)
        if truncated and b"\n" in tail:
            tail = tail[tail.index(b"\n") + 1 :]  # start at a line: no half secret left to scrub
        return tail, truncated, bytes(self.full) if self.full is not None else None


class _Usage:
    """CPU seconds and peak RSS of the child's process tree, from samples taken while it runs."""

    def __init__(self, pid: int):
        import psutil

        self.psutil = psutil
        self.cpu: dict[tuple[int, float], float] = {}
        self.peak: int | None = None
        try:  # Popen returned: the child has exec'd, its RSS is the program's own
            self.root: Any = psutil.Process(pid)
        except psutil.Error:
            self.root = None

    def sample(self) -> None:
        psutil = self.psutil
        if self.root is None:
            return
        try:
            procs = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        rss = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times, memory = proc.cpu_times(), proc.memory_info()
                    self.cpu[(proc.pid, proc.create_time())] = times.user + times.system
                rss += memory.rss
            except psutil.Error:
                continue
        if rss:  # 0: the tree had exited between the samples (zombies hold no memory)
            self.peak = max(self.peak or 0, rss)

    def totals(self, rusage: Any) -> tuple[float | None, int | None]:
        """Sampled CPU of every process seen, or the kernel's count for the child and the
        children it waited for when that is more (it includes the time after the last sample)."""
        cpu = sum(self.cpu.values()) if self.cpu else None
        if rusage is not None:
            cpu = max(cpu or 0.0, rusage.ru_utime + rusage.ru_stime)
        # ru_maxrss is no help: it counts this (large) process, which the child was before exec
        return (round(cpu, 3) if cpu is not None else None), self.peak


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """A preexec function asking Linux to SIGKILL the child when its parent dies."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above: do not run at all
            os._exit(1)

    return preexec


def run_process(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    on_line: Callable[[str, str], None],
    deadline: float | None = None,
    stop: threading.Event | None = None,
    grace: float = 5.0,
    keep_stdout: int | None = None,
) -> Outcome:
    """Run `argv` to its end, or until `deadline` (time.monotonic) or `stop`; then kill its group.

    `on_line(stream, text)` gets each output line from a reader thread. `keep_stdout` keeps all
    of stdout up to that many bytes (for JSON output). OSError (no such program) is raised as is.
    """
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own session and process group: pgid == pid
        preexec_fn=_die_with_parent(os.getpid()),
        close_fds=True,
    )
    pgid = proc.pid
    with _GROUPS_LOCK:
        _GROUPS.add(pgid)
    watch(pgid)
    exited = threading.Event()
    reaped: dict[str, Any] = {}

    def reap() -> None:
        _, status, rusage = os.wait4(proc.pid, 0)
        reaped.update(ended=time.monotonic(), rusage=rusage)
        proc.returncode = os.waitstatus_to_exitcode(status)
        exited.set()

    threading.Thread(target=reap, name="opsflow-command-wait", daemon=True).start()
    streams = [
        _Stream("stdout", proc.stdout, on_line, keep_stdout),
        _Stream("stderr", proc.stderr, on_line, None),
    ]
    usage = _Usage(proc.pid)
    usage.sample()  # at once: a program done within the first step is still measured
    ended, step = "exited", 0
    try:
        while True:
            wait = _SAMPLE_STEPS[min(step, len(_SAMPLE_STEPS) - 1)]
            step += 1
            if deadline is not None:
                wait = max(0.0, min(wait, deadline - time.monotonic()))
            if exited.wait(wait):
                break
            if deadline is not None and time.monotonic() >= deadline:
                ended = "timeout"
                break
            if stop is not None and stop.is_set():
                ended = "stopped"
                break
            usage.sample()
        leftovers = 0
        if ended != "exited":
            kill_group(pgid, grace)
        else:
            leftovers = len(_members(pgid))
            if leftovers:
                kill_group(pgid, grace)
    except BaseException:  # Ctrl-C in this thread, or a bug: the group must not outlive it
        kill_group(pgid, grace)
        raise
    finally:
        with _GROUPS_LOCK:
            _GROUPS.discard(pgid)
        unwatch(pgid)
    for stream in streams:
        stream.thread.join(timeout=_KILL_WAIT_SECONDS)  # a process that left the group may hold it
    stdout, stdout_cut, full = streams[0].result()
    stderr, stderr_cut, _ = streams[1].result()
    cpu, peak = usage.totals(reaped.get("rusage"))
    return Outcome(
        ended=ended,
        exit_code=proc.returncode if ended == "exited" else None,
        stdout=stdout,
        stderr=stderr,
        stdout_truncated=stdout_cut,
        stderr_truncated=stderr_cut,
        full_stdout=full,
        duration_s=reaped.get("ended", time.monotonic()) - started,
        cpu_seconds=cpu,
        peak_rss_bytes=peak,
        leftovers=leftovers,
    )


def _members(pgid: int) -> list[int]:
    """The live (not zombie) processes of group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return []
    except PermissionError:
        pass
    import psutil

    found = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.pid)
        except (OSError, psutil.Error):
            continue
    return found


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _gone(pgid: int, seconds: float) -> bool:
    """Whether group `pgid` empties within `seconds` (polled, bounded)."""
    end = time.monotonic() + seconds
    while _members(pgid):
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)
    return True


def kill_group(pgid: int, grace: float) -> None:
    """SIGTERM the group; SIGKILL what is left after `grace` seconds; wait for it to go."""
    _signal_group(pgid, signal.SIGTERM)
    if not _gone(pgid, grace):
        _signal_group(pgid, signal.SIGKILL)
        _gone(pgid, _KILL_WAIT_SECONDS)


@atexit.register
def _kill_running_groups() -> None:
    """At interpreter exit (Prefect's SIGTERM, the end of a CLI run), no program is left behind."""
    with _GROUPS_LOCK:
        groups = list(_GROUPS)
    for pgid in groups:
        _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + _EXIT_GRACE_SECONDS
    while groups and time.monotonic() < end:
        groups = [pgid for pgid in groups if _members(pgid)]
        if groups:
            time.sleep(0.05)
    for pgid in groups:
        _signal_group(pgid, signal.SIGKILL)
