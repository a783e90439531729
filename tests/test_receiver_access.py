"""No unauthenticated receiver off loopback, and the token from a file: the real `pipeline`
command as a subprocess. The refusals exit before anything listens; traffic goes to 127.0.0.1 only."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from support.ports import free_port

pytestmark = pytest.mark.timeout(180)

UNREACHABLE_API = "http://127.0.0.1:9/api"  # never reached: every command here stops first
TOKEN = "rcv-file-token-4f1e9a7c2b"


def pipeline(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSFLOW_RECEIVER_TOKEN")}
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args],
        env={**clean, "PREFECT_API_URL": UNREACHABLE_API, **env},
        capture_output=True,
        text=True,
        timeout=90,
    )


REFUSAL = "Refusing to run the receiver on {host} without a token: set OPSFLOW_RECEIVER_TOKEN"


@pytest.mark.parametrize(
    "args",
    [
        ("receiver", "--host", "0.0.0.0"),
        ("receiver", "--host", "::"),
        ("receiver", "--host", "ops.example.internal"),
        ("serve", "--receiver", "--host", "0.0.0.0"),
    ],
)
def test_no_token_off_loopback_is_refused_in_one_line_before_listening(args):
    done = pipeline(*args)
    host = args[args.index("--host") + 1]
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(REFUSAL.format(host=host)), done.stderr
    assert "--no-auth" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_no_auth_lets_it_start_with_a_warning(tmp_path):
    # the journal cannot be opened: the command stops right after the access check, before listening
    done = pipeline(
        "receiver",
        "--host",
        "0.0.0.0",
        "--no-auth",
        "--journal",
        OPSFLOW_DATABASE_URL="postgresql://nobody:pw@127.0.0.1:1/journal",
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0].startswith("WARNING opsflow.receiver: the receiver on 0.0.0.0 accepts requests without")
    assert lines[-1].startswith("Cannot open the receiver journal")


@pytest.mark.parametrize(
    "make, says",
    [
        (lambda d: d / "missing", "OPSFLOW_RECEIVER_TOKEN_FILE: no such file: "),
        (lambda d: d, "is a directory, not a token file"),
        (lambda d: (d / "empty").write_text(" \n") and d / "empty", "is empty"),
    ],
    ids=["missing", "directory", "empty"],
)
def test_a_bad_token_file_is_a_clear_error_even_on_loopback(tmp_path, make, says):
    path = make(tmp_path)
    done = pipeline("receiver", OPSFLOW_RECEIVER_TOKEN_FILE=str(path))
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and str(path) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_token_and_token_file_together_is_an_error(tmp_path):
    path = tmp_path / "token"
    path.write_text(TOKEN)
    done = pipeline("receiver", OPSFLOW_RECEIVER_TOKEN=TOKEN, OPSFLOW_RECEIVER_TOKEN_FILE=str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == "Set only one of OPSFLOW_RECEIVER_TOKEN and OPSFLOW_RECEIVER_TOKEN_FILE"


def test_a_token_file_allows_off_loopback_and_is_what_the_receiver_requires(
    tmp_path: Path, prefect_api: str, monkeypatch
):
    from deployments.receiver.access import check_receiver_access

    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")  # as `echo TOKEN > file` writes it
    monkeypatch.delenv("OPSFLOW_RECEIVER_TOKEN", raising=False)
    monkeypatch.setenv("OPSFLOW_RECEIVER_TOKEN_FILE", str(path))
    check_receiver_access("0.0.0.0", no_auth=False)  # no refusal: a token is set

    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSFLOW_RECEIVER_TOKEN")}
    env = {**clean, "PREFECT_API_URL": prefect_api, "OPSFLOW_RECEIVER_TOKEN_FILE": str(path)}
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.cli", "receiver", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        for _ in range(900):
            if time.monotonic() > deadline or process.poll() is not None:
                break
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        missing = httpx.get(f"{base}/definitions", timeout=10)
        wrong = httpx.get(f"{base}/definitions", headers={"Authorization": "Bearer nope"}, timeout=10)
        right = httpx.get(f"{base}/definitions", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
        if process.stderr:
            process.stderr.close()
    assert missing.status_code == 401 and wrong.status_code == 401
    assert right.status_code == 200, right.text
