"""`prefect server start` as a user runs it, in its own process group, with its log checked.

A real server runs its services (scheduler, automations, ...) in the background; when one
of them fails it logs a traceback and goes on, and nothing a client sees changes. That is
how a scheduler that never scheduled went unnoticed, so every test that starts a server
fails when the server's log holds a traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from support.ports import free_port

__all__ = [
    "ALLOWED_SEEN",
    "BIN",
    "SQLITE_LOCKED",
    "PrefectServer",
    "ends_locked",
    "excerpt",
    "final_exception",
    "problem_records",
    "server_log_problems",
    "wait_healthy",
]

BIN = Path(sys.executable).parent

# what a failing server service or request handler leaves in the log
# Prefect's own services on a SQLite database meet its one writer lock under load (Prefect
# issues #15170, #10188): the stall the README documents. Let pass on SQLite only, and reported.
SQLITE_LOCKED = "sqlite3.OperationalError: database is locked"
# the problems let pass, for the session's summary (tests/conftest.py prints them)
ALLOWED_SEEN: list[str] = []
PROBLEM = re.compile(r"Traceback \(most recent call last\)|\| ERROR +\||^ERROR:", re.MULTILINE)
# the first line of a log record: Prefect's "21:06:38.123 | LEVEL | ..." or uvicorn's "LEVEL: ..."
RECORD = re.compile(r"^(\d{2}:\d{2}:\d{2}\.\d{3} \||(INFO|WARNING|ERROR|DEBUG|CRITICAL):)", re.MULTILINE)
# what Python prints past logging, and the lines that join a traceback to the one before
RAW_START = re.compile(r"^Exception (in thread|ignored in)\b")
CHAINED = ("During handling of the above exception", "The above exception was the direct cause")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(: |$)")


def wait_healthy(
    api_url: str, process: subprocess.Popen, timeout: float = 240, *, path: str = "/health"
) -> None:
    """Block until `path` (a Prefect server's `/health`, the receiver's `/healthz`) answers 200;
    fail if the process exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited early ({process.returncode})"
        try:
            with urllib.request.urlopen(f"{api_url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"nothing answered at {api_url}{path} within {timeout:.0f} s")


def problem_records(text: str) -> list[str]:
    """The log records in a server log that hold a traceback or are ERRORs, each whole.

    A record runs from its header line to the next one, so the chained tracebacks of one
    ERROR ("During handling of the above exception ...") are one problem, judged whole.
    What a process prints past its logging (`Exception in thread ...`, a second traceback
    that no chaining line joins to the first) starts a record of its own.
    """
    records: list[list[str]] = []
    traced = False  # the current record holds a traceback already
    previous = ""  # the last non-empty line
    for line in text.splitlines():
        joined = previous.startswith(CHAINED)
        if RECORD.match(line) or RAW_START.match(line) or not records:
            records.append([])
            traced = False
        elif line.startswith("Traceback (most recent call last)") and traced and not joined:
            records.append([])
        traced = traced or line.lstrip().startswith("Traceback (most recent call last)")
        records[-1].append(line)
        previous = line.strip() or previous
    whole = ("\n".join(lines).rstrip() for lines in records)
    return [record for record in whole if PROBLEM.search(record)]


def ends_locked(record: str) -> bool:
    """SQLite's lock, and a chain that ends in it, not in another error the lock caused."""
    return SQLITE_LOCKED in record and "database is locked" in final_exception(record)


def final_exception(record: str) -> str:
    """The exception a record's traceback ends with (its last `module.Error: message` line)."""
    found = [line for line in record.splitlines() if EXCEPTION_LINE.match(line)]
    return found[-1] if found else ""


def excerpt(record: str) -> str:
    """A problem cut to its start and its last lines (where the exception is named)."""
    if len(record) <= 2100:
        return record
    return record[:1500] + "\n  …\n" + record[-600:]


def server_log_problems(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """Excerpts of the problems in a server log, but those holding one of `allowed`.

    `allowed` holds substrings of problems a test provokes on purpose (a server killed
    mid-request); anything else is a failure of the server under test.
    """
    allowed = list(allowed)
    return [excerpt(r) for r in problem_records(text) if not any(pattern in r for pattern in allowed)]


class PrefectServer:
    """`prefect server start` on a free loopback port (SQLite under `home`, or a PostgreSQL URL)."""

    def __init__(
        self,
        home: Path,
        database_url: str | None = None,
        *,
        services: bool = True,
        env: dict[str, str] | None = None,
    ) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
        self.env.update(
            PREFECT_HOME=str(home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_UI_ENABLED="false",
        )
        if database_url:
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url.replace("+psycopg", "+asyncpg")
        self.env.update(env or {})
        self.services = services
        self.sqlite = not database_url
        home.mkdir(parents=True, exist_ok=True)
        self.log = home.parent / f"prefect-server-{self.port}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> PrefectServer:
        command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [*command, *([] if self.services else ["--no-services"])],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_healthy(self.api_url, self.process)
        return self

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed server dies: no shutdown, requests cut mid-way."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def assert_clean_log(self, allowed: Iterable[str] = (), *, sqlite_lock: bool = True) -> None:
        """Fail with the first problems when the server logged a traceback or an ERROR.

        On SQLite, Prefect's "database is locked" is let pass and reported at the session's
        end, unless `sqlite_lock` is False (a test of what must not lock it).
        """
        allowed = list(allowed)
        problems = [r for r in problem_records(self.log_text()) if not any(a in r for a in allowed)]
        if self.sqlite and sqlite_lock:
            # a lock let pass only when the chain ends in it, not in another error it caused
            locked = [p for p in problems if ends_locked(p)]
            ALLOWED_SEEN.extend(f"{self.log}:\n{excerpt(p)}" for p in locked)
            problems = [p for p in problems if p not in locked]
        shown = "\n---\n".join(excerpt(p) for p in problems[:3])
        assert not problems, f"{len(problems)} problem(s) in {self.log}:\n\n{shown}"
