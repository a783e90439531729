"""Prefect servers for benchmarks: opsflow's LocalServer or `prefect server start`, on SQLite or PostgreSQL.

Every server here runs under a PREFECT_HOME of its own and is stopped by whoever
started it, also on error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bench.pg import temporary_database

__all__ = ["PREFECT", "PrefectServer", "base_env", "free_port", "local_server_at", "prefect_server"]

ROOT = Path(__file__).resolve().parent.parent
PREFECT = ROOT / ".venv" / "bin" / "prefect"


def base_env() -> dict[str, str]:
    """This environment without any Prefect setting (each child gets exactly what it needs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_health(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class PrefectServer:
    """`prefect server start` in its own session (it may spawn workers), with its own PREFECT_HOME."""

    def __init__(self, home: str) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = tempfile.TemporaryFile()
        env = {
            **base_env(),
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        self.process = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        try:
            wait_health(f"{self.api_url}/health", self.process)
        except RuntimeError:
            self.log.seek(0)
            sys.stderr.write(self.log.read().decode(errors="replace")[-3000:])
            raise

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group this script created
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def local_server_at(home: str):
    """opsflow's LocalServer on its own PREFECT_HOME, leaving this process's environment as it was."""
    from flows.local_server import LocalServer
    from flows.settings import DEFAULTS

    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("PREFECT_")]:
            del os.environ[key]
        os.environ.update(DEFAULTS)
        os.environ["PREFECT_HOME"] = home
        return LocalServer()  # it copies os.environ when it starts
    finally:
        os.environ.clear()
        os.environ.update(saved)


@contextlib.contextmanager
def prefect_server(work: Path, postgres: str | None, prefix: str) -> Iterator[str]:
    """opsflow's LocalServer for this process and its children (PREFECT_API_URL points at it).

    Its database is SQLite under `work`, or a fresh PostgreSQL database on the server
    the admin URL `postgres` reaches, dropped once the server has stopped. Must run
    before this process imports Prefect (it reads its settings once). Yields the API URL.
    """
    from flows.local_server import start_local_server
    from flows.settings import apply_prefect_defaults

    with contextlib.ExitStack() as stack:
        os.environ["PREFECT_HOME"] = str(work / "prefect")
        os.environ.pop("PREFECT_API_URL", None)
        os.environ.pop("PREFECT_SERVER_DATABASE_CONNECTION_URL", None)
        if postgres:
            database = stack.enter_context(temporary_database(postgres, prefix))
            os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database.url("asyncpg")
        apply_prefect_defaults(quiet_console=True)
        server = start_local_server()
        assert server is not None, "PREFECT_API_URL was cleared, so a local server must start"
        try:
            server.wait_ready()
            yield server.api_url
        finally:
            server.stop()
