"""Benchmark: messages delivered per second through one notify node fanning out to 50 channels.

The sink is a threaded HTTP server on 127.0.0.1 that answers every POST with 200 `ok`.
Run: .venv/bin/python bench/notify.py
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.base import NodeContext, RunInfo  # noqa: E402
from nodes.notify import node as notify  # noqa: E402

CHANNELS = 50
REPEATS = 7
GOAL = 200.0


class Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    received = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Sink.lock:
            Sink.received += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def measure(config: notify.Config) -> float:
    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="bench"), node_id="notify")
    before = Sink.received
    started = time.perf_counter()
    out = notify.run(config, ctx)
    elapsed = time.perf_counter() - started
    assert out["channels_succeeded"] == CHANNELS and Sink.received - before == CHANNELS
    return CHANNELS / elapsed


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops concurrent connects (SYN retries)


def main() -> None:
    server = Server(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    drivers = [
        {"driver": "slack", "webhook_url": f"{base}/slack/{{}}"},
        {"driver": "discord", "webhook_url": f"{base}/discord/{{}}"},
        {"driver": "teams", "webhook_url": f"{base}/teams/{{}}"},
        {"driver": "webhook", "url": f"{base}/hook/{{}}"},
        {"driver": "pagerduty", "routing_key": "k" * 32, "events_url": f"{base}/pd/{{}}"},
    ]

    def channels(kinds):
        made = []
        for i in range(CHANNELS):
            spec = dict(kinds[i % len(kinds)])
            key = "url" if "url" in spec else ("webhook_url" if "webhook_url" in spec else "events_url")
            spec[key] = spec[key].format(i)
            made.append(spec)
        return made

    cases = {
        f"slack webhook x{CHANNELS}, messages/s": notify.Config.model_validate(
            {"message": "disk 97 % on db-01", "channels": channels(drivers[:1])}
        ),
        f"5 HTTP drivers mixed x{CHANNELS}, messages/s": notify.Config.model_validate(
            {"message": "disk 97 % on db-01", "channels": channels(drivers)}
        ),
    }
    print("| figure | goal | measured median (min–max) |")
    print("| --- | --- | --- |")
    for name, config in cases.items():
        measure(config)  # warm-up: imports, first connections
        rates = [measure(config) for _ in range(REPEATS)]
        print(
            f"| {name} ({REPEATS} repeats) | >= {GOAL:.0f}/s | "
            f"{statistics.median(rates):.0f}/s ({min(rates):.0f}–{max(rates):.0f}) |"
        )
    server.shutdown()


if __name__ == "__main__":
    main()
