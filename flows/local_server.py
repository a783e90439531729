"""Prefect's local ephemeral server (SQLite under PREFECT_HOME), started by opsflow itself.

Prefect would start the same server on first API use, but only after importing its
whole server package in the client process (~5 s here) and without waiting for
queued task-run events at exit. Starting it ourselves lets it boot while the CLI
imports, and lets the CLI stop it only once the run's history is written.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from pathlib import Path

__all__ = ["LocalServer", "configured_api_url", "start_local_server"]

STARTUP_TIMEOUT = 120.0

# uvicorn that exits once the process that started it is gone: the server has a session of
# its own (Ctrl-C on the terminal is the CLI's to handle), so no signal of the terminal's
# would end it after a CLI killed before its atexit
_WATCHED_UVICORN = """
import os, runpy, sys, threading, time
parent = int(sys.argv.pop(1))
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv[0] = "uvicorn"
runpy.run_module("uvicorn", run_name="__main__", alter_sys=True)
"""


def configured_api_url() -> str | None:
    """PREFECT_API_URL from the environment or the active Prefect profile, without importing Prefect."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    profiles = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(profiles.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or data.get("active")
    return (data.get("profiles", {}).get(active) or {}).get("PREFECT_API_URL") or None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """A `prefect.server` ASGI app in a uvicorn subprocess on a free loopback port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._log = tempfile.TemporaryFile()
        self._final_output = ""
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
        }
        env.pop("PREFECT_API_URL", None)
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WATCHED_UVICORN,
                str(os.getpid()),
                "--factory",
                "prefect.server.api.server:create_app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--log-level",
                "error",
                "--lifespan",
                "on",
            ],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # its own session: a Ctrl-C on the terminal reaches the CLI, which cancels its run
            # and stops this server only once the cancellation is recorded
            start_new_session=True,
        )
        atexit.register(self.stop)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Block until the API answers /health; RuntimeError with the server's output if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"the local Prefect server exited ({self.process.returncode}): {self._tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the local Prefect server did not start within {timeout:.0f} s: {self._tail()}")

    def output(self) -> str:
        """Everything the server printed so far (its errors and tracebacks)."""
        if self._log.closed:  # stopped: what it printed was kept
            return self._final_output
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def _tail(self) -> str:
        return self.output()[-2000:].strip() or "(no output)"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if not self._log.closed:
            self._final_output = self.output()
            self._log.close()


def start_local_server() -> LocalServer | None:
    """Start the local server and point this process at it, unless an API is configured."""
    if configured_api_url():
        return None
    server = LocalServer()
    os.environ["PREFECT_API_URL"] = server.api_url
    return server
