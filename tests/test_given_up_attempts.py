"""An attempt the node's timeout gave up does not act afterwards; Retry-After is honoured in full.

Through whole flow runs on the session's Prefect server. The targets answer late through
a delaying TCP proxy in front of a real server (aiosmtpd, an HTTP sink), and each test
counts what the target received after the run ended and a few seconds more: an abandoned
attempt still running in its thread would deliver then.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from support.ports import free_port
from test_faults_notify import _smtp_config, fault_server, notify_definition, run_flow  # noqa: F401

pytestmark = pytest.mark.timeout(120)

GREETING_DELAY = 2.5  # longer than the node's timeout: the attempt is given up before it


class LateProxy:
    """Accepts at once, connects to `upstream` only `delay` seconds later, then relays both ways.

    As a slow SMTP server or an overloaded load balancer: the client's connection is up,
    but the first word comes late. A client that gave up in the meantime has closed its
    end, so whatever it would have sent then never arrives.
    """

    def __init__(self, upstream_port: int, delay: float):
        self.upstream_port = upstream_port
        self.delay = delay
        self.stopping = threading.Event()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:  # stop() closed the listener while it waited
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        if self.stopping.wait(self.delay):
            client.close()
            return
        with contextlib.ExitStack() as stack:
            stack.callback(client.close)
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            stack.callback(upstream.close)
            done = threading.Event()
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink, done), daemon=True).start()
            done.wait(timeout=30)

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, done: threading.Event) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            done.set()

    def stop(self) -> None:
        self.stopping.set()
        self.listener.close()


class _Mailbox:
    def __init__(self) -> None:
        self.accepted: list = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.accepted.append(envelope)
        return "250 OK"


def test_a_given_up_email_attempt_never_delivers_later(run_flow):  # noqa: F811
    """Before ctx.deadline, each abandoned attempt waited out the 10 s SMTP timeout and then sent."""
    from aiosmtpd.controller import Controller

    mailbox = _Mailbox()
    port = free_port()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    proxy = LateProxy(port, GREETING_DELAY)
    try:
        definition = notify_definition(_smtp_config(proxy.port), retries=2, timeout=1)
        state, result, _ = run_flow(definition)
        time.sleep(GREETING_DELAY + 3)  # the abandoned attempts' time to act, had they any
    finally:
        proxy.stop()
        controller.stop()
    assert state.is_failed()
    node = result["node_results"]["notify"]
    assert node["attempts"] == 3
    assert mailbox.accepted == [], f"{len(mailbox.accepted)} mail(s) sent by attempts given up"


def test_retry_after_is_never_cut_short_by_the_jitter(run_flow, fault_server):  # noqa: F811
    """Prefect jitters its own delay down to 0.63 × planned; the extra wait must cover that."""
    slack = fault_server((429, {"Retry-After": "2"}), (429, {"Retry-After": "2"}), 200)
    definition = notify_definition(
        {"driver": "slack", "webhook_url": slack.url("/services/T0/B0/late")}, retries=3, timeout=5, delay=1
    )
    state, result, _ = run_flow(definition)
    assert state.is_completed(), result["error"]
    gaps = [b["at"] - a["at"] for a, b in zip(slack.requests, slack.requests[1:], strict=False)]
    assert len(slack.requests) == 3 and min(gaps) >= 2.0, gaps


def test_a_slow_model_leaves_time_for_the_local_fallback(run_flow, httpserver):  # noqa: F811
    """The model answers after the node's timeout: the local rules still analyse, in the same attempt."""
    from werkzeug import Response

    stop = threading.Event()

    def slow(request) -> Response:
        stop.wait(6)  # longer than the node's 3 s
        return Response("{}", status=200, content_type="application/json")

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(slow)
    definition = {
        "name": "slow-model",
        "version": "1.0",
        "nodes": [
            {
                "id": "analyze",
                "type": "intelligence",
                "retries": 0,
                "timeout_seconds": 3,
                "config": {
                    "provider": "openai",
                    "model": "gpt-test",
                    "api_key": "sk-test-slow-model",
                    "base_url": httpserver.url_for("/v1"),
                    "timeout_seconds": 30,
                    "fallback": "local",
                },
            }
        ],
    }
    try:
        state, result, _ = run_flow(definition)
    finally:
        stop.set()
    assert state.is_completed(), result["error"]
    output = result["node_results"]["analyze"]["output"]
    assert output["provider"] == "local" and output["fallback_used"] is True
    assert "openai" in output["fallback_reason"]


@pytest.mark.parametrize(
    "config",
    [
        {"driver": "webhook", "url": "URL"},
        {"driver": "slack", "webhook_url": "URL"},
        {"driver": "teams", "webhook_url": "URL"},
        {"driver": "discord", "webhook_url": "URL"},
        {"driver": "pagerduty", "routing_key": "R" * 32, "events_url": "URL"},
    ],
    ids=lambda c: c["driver"],
)
def test_an_http_driver_sends_nothing_once_the_attempt_is_out_of_time(config, httpserver):
    """Every HTTP driver takes its timeout from ctx.time_left: past the deadline, nothing goes out."""
    from nodes.base import NodeContext, RunInfo, Secrets
    from nodes.errors import NodeError
    from nodes.runtime import execute_node

    httpserver.expect_request("/hook").respond_with_data("ok")
    config = {k: httpserver.url_for("/hook") if v == "URL" else v for k, v in config.items()}
    ctx = NodeContext(run=RunInfo(trace_id=f"late-{config['driver']}"), secrets=Secrets())
    ctx.deadline = time.monotonic() - 0.01
    with pytest.raises(NodeError, match="out of time"):
        execute_node("tell", "notify", {"title": "late", **config}, ctx)
    # (the shared server may still log a straggler of the test before, to its own path)
    assert [request.path for request, _ in httpserver.log if request.path == "/hook"] == []
