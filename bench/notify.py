"""Benchmark: messages delivered per second through one notify node fanning out to 50 channels.

The sink is a threaded HTTP server on 127.0.0.1 that answers every POST with 200 `ok`.
Run: ./dev python bench/notify.py [--channels 50] [--repeats 7]
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import Row, add_output_args, emit  # noqa: E402
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


def measure(config: notify.Config, channels: int) -> float:
    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="bench"), node_id="notify")
    before = Sink.received
    started = time.perf_counter()
    out = notify.run(config, ctx)
    elapsed = time.perf_counter() - started
    assert out["channels_succeeded"] == channels and Sink.received - before == channels
    return channels / elapsed


class Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 drops concurrent connects (SYN retries)


def configs(base: str, count: int) -> dict[str, notify.Config]:
    drivers = [
        {"driver": "slack", "webhook_url": f"{base}/slack/{{}}"},
        {"driver": "discord", "webhook_url": f"{base}/discord/{{}}"},
        {"driver": "teams", "webhook_url": f"{base}/teams/{{}}"},
        {"driver": "webhook", "url": f"{base}/hook/{{}}"},
        {"driver": "pagerduty", "routing_key": "k" * 32, "events_url": f"{base}/pd/{{}}"},
    ]

    def channels(kinds):
        made = []
        for i in range(count):
            spec = dict(kinds[i % len(kinds)])
            key = "url" if "url" in spec else ("webhook_url" if "webhook_url" in spec else "events_url")
            spec[key] = spec[key].format(i)
            made.append(spec)
        return made

    message = "disk 97 % on db-01"
    return {
        f"notify, one node, slack webhook x{count} channels": notify.Config.model_validate(
            {"message": message, "channels": channels(drivers[:1])}
        ),
        f"notify, one node, 5 HTTP drivers mixed x{count} channels": notify.Config.model_validate(
            {"message": message, "channels": channels(drivers)}
        ),
    }


def rows(channels: int = CHANNELS, repeats: int = REPEATS) -> list[Row]:
    server = Server(("127.0.0.1", 0), Sink)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    made = []
    try:
        for name, config in configs(f"http://127.0.0.1:{server.server_address[1]}", channels).items():
            measure(config, channels)  # warm-up: imports, first connections
            rates = [measure(config, channels) for _ in range(repeats)]
            made.append(Row(name, f"≥ {GOAL:.0f}/s, concurrent", rates, "messages/s", "higher", GOAL))
    finally:
        server.shutdown()
        server.server_close()
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=CHANNELS)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    add_output_args(parser)
    args = parser.parse_args()
    emit(rows(args.channels, args.repeats), args, "notify")


if __name__ == "__main__":
    main()
