"""Notify targets that fail, through whole flow runs on the session's Prefect server.

tests/test_notify.py checks how each driver translates one failure; here a real run
meets a scripted fault server on 127.0.0.1 and the node's own retry policy and timeout
(from the definition) decide the outcome. Each case checks how many requests the
target received (retries happened, nothing was sent again after a success), the node's
final outcome and error text, and that the run ended within the configured time.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from support.ports import free_port

pytestmark = pytest.mark.timeout(120)

# Prefect's own cost of a flow run and its task runs on a loaded 2-CPU machine, generously
PREFECT_MARGIN_SECONDS = 15.0
ROUTING_KEY = "R" * 32


class FaultServer:
    """A TCP server on 127.0.0.1 that plays one scripted behaviour per connection.

    A step is an HTTP status (optionally with headers) or one of: `hang` (read the
    request, never answer), `close` (read it, close without a word), `partial` (half
    a response, then close), `silent` (accept and say nothing, as a stuck SMTP server),
    `drop` (accept and close at once).
    The last step repeats. Every connection carries one request (`Connection: close`).
    """

    def __init__(self, *script):
        self.script = list(script)
        self.connections = 0
        self.requests: list[dict] = []  # {"at", "path", "body"} per request read
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        accept = threading.Thread(target=self._accept, name="fault-server", daemon=True)
        accept.start()
        self._threads.append(accept)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        """Let held connections go (their abandoned senders end) and stop accepting."""
        self._release.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._listener.close()

    def _accept(self) -> None:
        while not self._release.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                step = self.script[min(self.connections, len(self.script) - 1)]
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, step), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket, step) -> None:
        with conn:
            if step in ("silent", "drop"):
                if step == "silent":
                    self._release.wait(60)
                return
            conn.settimeout(5)
            self._read_request(conn)
            if step == "hang":
                self._release.wait(60)
            elif step == "partial":
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Content-Length: 64\r\nConnection: close\r\n\r\n{"ok": tr'
                )
            elif step != "close":
                status, headers = step if isinstance(step, tuple) else (step, {})
                body = b'{"status": "success"}' if status < 300 else b'{"message": "fault server says no"}'
                head = f"HTTP/1.1 {status} Fault\r\nContent-Type: application/json\r\n"
                head += f"Content-Length: {len(body)}\r\nConnection: close\r\n"
                head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                conn.sendall(head.encode() + b"\r\n" + body)

    def _read_request(self, conn: socket.socket) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:")), 0
        )
        while len(body) < length:
            body += conn.recv(65536)
        with self._lock:
            self.requests.append({"at": time.monotonic(), "path": lines[0].split()[1], "body": body})


@pytest.fixture
def fault_server():
    """Start FaultServers with a script each; all are stopped after the test."""
    servers: list[FaultServer] = []

    def start(*script) -> FaultServer:
        servers.append(FaultServer(*script))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def run_flow(prefect_api):
    """Run a definition through the flow; (Prefect state, Run result, seconds it took)."""
    from flows.pipeline import run_pipeline

    def go(definition: dict):
        started = time.monotonic()
        state = asyncio.run(run_pipeline(definition=definition, return_state=True))
        return state, state.result(raise_on_failure=False), time.monotonic() - started

    return go


def notify_definition(config: dict, *, retries: int, timeout: float, delay: float = 0.1) -> dict:
    return {
        "name": "notify-faults",
        "version": "1.0",
        "nodes": [
            {
                "id": "notify",
                "type": "notify",
                "config": {"title": "Disk full on db-01", **config},
                "retries": retries,
                "retry_delay_seconds": delay,
                "timeout_seconds": timeout,
            }
        ],
    }


def time_bound(definition: dict, extra: float = 0.0) -> float:
    """The longest a run may take: every attempt up to its timeout, the retry delays, a margin."""
    node = definition["nodes"][0]
    attempts = node["retries"] + 1
    # exponential backoff with 50 % jitter: at most 1.5 × delay × 2^k before attempt k + 2
    delays = sum(1.5 * node["retry_delay_seconds"] * 2**k for k in range(node["retries"]))
    return node["timeout_seconds"] * attempts + delays + extra + PREFECT_MARGIN_SECONDS


def assert_succeeded(state, result: dict, attempts: int) -> dict:
    assert state.is_completed(), result["error"]
    assert result["status"] == "completed" and result["error"] is None
    node = result["node_results"]["notify"]
    assert node["errors"] == [] and node["attempts"] == attempts
    assert node["output"]["channels_succeeded"] == node["output"]["channels_attempted"]
    return node


def assert_failed(state, result: dict, attempts: int, *phrases: str) -> str:
    """The run failed at the notify node with a one-line error naming each phrase."""
    assert state.is_failed()
    assert result["status"] == "failed"
    node = result["node_results"]["notify"]
    assert node["attempts"] == attempts
    message = result["error"]
    assert message == node["errors"][0]["message"] and message.startswith("node 'notify'")
    for phrase in phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"
    text = json.dumps(result)
    assert "Traceback" not in text and 'File "' not in text and "\n" not in message
    return message


# -- HTTP targets that recover: retried until delivered, and delivered once ----------------------


def test_slack_429_with_retry_after_is_retried_after_the_wait(run_flow, fault_server):
    slack = fault_server((429, {"Retry-After": "1"}), 200)
    definition = notify_definition(
        {"driver": "slack", "webhook_url": slack.url("/services/T0/B0/faults")}, retries=3, timeout=5
    )
    state, result, took = run_flow(definition)
    node = assert_succeeded(state, result, attempts=2)
    assert len(slack.requests) == 2  # one refusal, one delivery, then nothing more
    first, second = slack.requests
    assert second["at"] - first["at"] >= 0.9  # Retry-After: 1 was honoured
    assert json.loads(second["body"])["text"].startswith("Disk full on db-01")
    assert node["output"]["deliveries"][0]["http_status"] == 200
    assert took < time_bound(definition, extra=1.0)


def test_webhook_500_then_200_and_a_delivered_fan_out_channel_is_not_sent_again(run_flow, fault_server):
    flaky = fault_server(500, 200)
    steady = fault_server(200)
    definition = notify_definition(
        {
            "channels": [
                {"driver": "webhook", "url": flaky.url("/hooks/flaky")},
                {"driver": "slack", "webhook_url": steady.url("/services/steady")},
            ]
        },
        retries=2,
        timeout=5,
    )
    state, result, took = run_flow(definition)
    node = assert_succeeded(state, result, attempts=2)
    assert len(flaky.requests) == 2 and len(steady.requests) == 1
    webhook, slack = node["output"]["deliveries"]
    assert webhook["http_status"] == 200 and "earlier_attempt" not in webhook
    assert slack["earlier_attempt"] is True  # delivered by attempt 1, remembered by attempt 2
    assert took < time_bound(definition)


@pytest.mark.parametrize("fault", ["close", "partial"])
def test_webhook_connection_dropped_without_an_answer_is_retried(run_flow, fault_server, fault):
    hook = fault_server(fault, 200)
    definition = notify_definition(
        {"driver": "webhook", "url": hook.url("/hooks/drop")}, retries=2, timeout=5
    )
    state, result, took = run_flow(definition)
    assert_succeeded(state, result, attempts=2)
    assert len(hook.requests) == 2
    assert took < time_bound(definition)


# -- HTTP targets that stay broken: a clear failure once the retries are spent ------------------


def test_pagerduty_500_forever_fails_after_every_retry(run_flow, fault_server):
    pagerduty = fault_server(500)
    definition = notify_definition(
        {"driver": "pagerduty", "routing_key": ROUTING_KEY, "events_url": pagerduty.url("/v2/enqueue")},
        retries=2,
        timeout=5,
    )
    state, result, took = run_flow(definition)
    message = assert_failed(state, result, 3, "pagerduty", "HTTP 500", "fault server says no")
    assert len(pagerduty.requests) == 3
    assert ROUTING_KEY not in json.dumps(result) and ROUTING_KEY not in message
    assert result["node_results"]["notify"]["errors"][0]["retryable"] is True
    assert took < time_bound(definition)


def test_webhook_partial_answer_forever_fails_naming_the_cut(run_flow, fault_server):
    hook = fault_server("partial")
    definition = notify_definition({"driver": "webhook", "url": hook.url("/hooks/cut")}, retries=1, timeout=5)
    state, result, took = run_flow(definition)
    assert_failed(state, result, 2, "webhook", "connection failed", "without sending complete message body")
    assert len(hook.requests) == 2
    assert took < time_bound(definition)


def test_pagerduty_down_fails_with_connection_refused(run_flow):
    port = free_port()  # nothing listens there
    url = f"http://127.0.0.1:{port}/v2/enqueue"
    definition = notify_definition(
        {"driver": "pagerduty", "routing_key": ROUTING_KEY, "events_url": url}, retries=2, timeout=5
    )
    state, result, took = run_flow(definition)
    assert_failed(state, result, 3, f"pagerduty http://127.0.0.1:{port}/***", "Connection refused")
    assert took < time_bound(definition)


def test_hung_webhook_fails_on_the_driver_timeout(run_flow, fault_server):
    hook = fault_server("hang")
    definition = notify_definition(
        {"driver": "webhook", "url": hook.url("/hooks/hung"), "timeout_seconds": 0.5}, retries=1, timeout=5
    )
    state, result, took = run_flow(definition)
    assert_failed(state, result, 2, "webhook http://127.0.0.1", "no answer within 0.5s")
    assert len(hook.requests) == 2
    assert took < time_bound(definition)


def test_hung_slack_is_cut_off_by_the_node_timeout(run_flow, fault_server):
    """The driver would wait 30 s: the node's 1 s timeout ends each attempt on time instead."""
    slack = fault_server("hang")
    definition = notify_definition(
        {"driver": "slack", "webhook_url": slack.url("/services/hung"), "timeout_seconds": 30},
        retries=1,
        timeout=1,
    )
    state, result, took = run_flow(definition)
    assert_failed(state, result, 2, "timed out after 1 s")
    assert len(slack.requests) == 2
    assert took < time_bound(definition)  # ~17 s: far below one 30 s driver wait per attempt


# -- SMTP --------------------------------------------------------------------------------------


class _TemporarilyFull:
    """An SMTP handler that answers 451 (try again later) to the first `refusals` mails."""

    def __init__(self, refusals: int):
        self.refusals = refusals
        self.attempts = 0
        self.accepted = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.attempts += 1
        if self.attempts <= self.refusals:
            return "451 4.3.0 Mailbox temporarily full, try again later"
        self.accepted.append(envelope)
        return "250 OK"


def _smtp_config(port: int, **extra) -> dict:
    return {
        "driver": "email",
        "to": ["oncall@example.com"],
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "sender": "opsflow@example.com",
        **extra,
    }


def test_smtp_451_is_retried_then_delivered_once(run_flow):
    from aiosmtpd.controller import Controller

    handler = _TemporarilyFull(refusals=1)
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        definition = notify_definition(_smtp_config(port), retries=2, timeout=5)
        state, result, took = run_flow(definition)
    finally:
        controller.stop()
    node = assert_succeeded(state, result, attempts=2)
    assert handler.attempts == 2 and len(handler.accepted) == 1
    assert b"Disk full on db-01" in handler.accepted[0].content
    assert node["output"]["deliveries"][0]["message_id"]
    assert took < time_bound(definition)


@pytest.mark.parametrize(
    "fault,cause",
    [("silent", "no answer within 0.5s"), ("drop", "connection closed by the server")],
)
def test_smtp_server_that_never_greets_fails_clearly(run_flow, fault_server, fault, cause):
    smtp = fault_server(fault)
    definition = notify_definition(_smtp_config(smtp.port, timeout_seconds=0.5), retries=1, timeout=5)
    state, result, took = run_flow(definition)
    assert_failed(state, result, 2, f"email 127.0.0.1:{smtp.port}", cause)
    assert smtp.connections == 2
    assert took < time_bound(definition)
