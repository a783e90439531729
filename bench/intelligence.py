"""Benchmark the intelligence node: prompt + local analysis on a large run, and the openai path's overhead.

Run: ./dev python bench/intelligence.py [--repeats 30]   (prints a Markdown table)
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import Row, add_output_args, emit  # noqa: E402
from nodes.base import NodeContext, RunInfo  # noqa: E402
from nodes.intelligence.local import Config as LocalConfig  # noqa: E402
from nodes.intelligence.local import analyze  # noqa: E402
from nodes.intelligence.node import Config, run  # noqa: E402
from nodes.intelligence.prompt import build_prompt  # noqa: E402

REPEATS = 30

ANALYSIS = {
    "summary": "Disk full.",
    "probable_cause": "Logs.",
    "severity": "critical",
    "recommendations": [{"title": "Rotate logs", "description": "logrotate -f", "priority": "high"}],
}
REPLY = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 0,
        "model": "gpt-4o-mini",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": json.dumps(ANALYSIS), "refusal": None},
            }
        ],
        "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
    }
).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real API
    disable_nagle_algorithm = True

    def do_POST(self):  # noqa: N802 (http.server's naming)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY)

    def log_message(self, *args):
        pass


def big_context(n_procs: int = 500, n_alerts: int = 200) -> NodeContext:
    procs = [
        {"pid": i, "name": f"proc{i}", "user": "app", "memory_percent": round(60 - i * 0.1, 2), "rss": i}
        for i in range(n_procs)
    ]
    alerts = [
        {
            "fingerprint": f"f{i}",
            "status": "firing",
            "severity": ("critical", "warning", "info")[i % 3],
            "title": f"Alert{i}",
            "description": f"something {i} is wrong on host-{i % 17}",
            "labels": {"alertname": f"Alert{i}", "instance": f"host-{i % 17}:9100", "job": "node"},
            "annotations": {"summary": f"summary {i}", "runbook_url": f"https://runbooks/{i}"},
            "source": "alertmanager",
            "starts_at": "2024-05-01T10:00:00Z",
            "ends_at": None,
            "generator_url": None,
        }
        for i in range(n_alerts)
    ]
    metrics = {
        "hostname": "web-1",
        "cpu": {"percent": 93.0, "count": 8},
        "memory": {"percent": 95.0, "swap_percent": 10.0},
        "disk": {"path": "/", "percent": 92.0, "free": 1},
        "load": {"1m": 20.0, "5m": 10.0, "15m": 5.0, "per_cpu_1m": 2.5},
        "processes": {"count": n_procs, "top_memory": procs, "self_pid": 1},
    }
    checks = {
        "status": "critical",
        "checks": [
            {
                "name": f"c{i}",
                "metric": "http",
                "value": 500,
                "status": "critical" if i % 5 == 0 else "ok",
                "warning": 1,
                "critical": 2,
                "message": f"check {i}",
            }
            for i in range(50)
        ],
    }
    incident = {
        "id": 1,
        "key": "k",
        "status": "open",
        "severity": "critical",
        "title": "Storm",
        "alert_count": n_alerts,
        "alerts": alerts,
    }
    return NodeContext(run=RunInfo(trace_id="bench"), nodes={"m": metrics, "c": checks}, incident=incident)


def small_context() -> NodeContext:
    return big_context(n_procs=5, n_alerts=3)


def measure(fn, repeats: int) -> list[float]:
    fn()  # warm-up (imports, connection set-up code paths)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def measure_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000


def local_rows(repeats: int, n_procs: int, n_alerts: int) -> list[Row]:
    ctx = big_context(n_procs, n_alerts)
    size = f"{n_procs} processes, {n_alerts} alerts, 8k-token budget"
    prompt_t = measure(lambda: build_prompt(ctx, max_input_tokens=8000), repeats)
    local_t = measure(lambda: analyze(LocalConfig(), ctx), repeats)
    both_t = measure(lambda: (build_prompt(ctx, max_input_tokens=8000), analyze(LocalConfig(), ctx)), repeats)
    return [
        Row(f"prompt build ({size})", "—", prompt_t, "ms"),
        Row("local analysis (same context)", "—", local_t, "ms"),
        Row(f"prompt build + local analysis ({size})", "≤ 20 ms", both_t, "ms", limit=20.0),
    ]


def openai_rows(repeats: int) -> list[Row]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        config = Config.model_validate({"provider": "openai", "base_url": base, "api_key": "sk-bench"})
        small = small_context()
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 2000}]})
        # both sides reuse a pooled keep-alive connection, as the node does between calls;
        # measured interleaved so machine load hits both alike
        with httpx.Client() as bare_client:

            def bare():
                return bare_client.post(
                    f"{base}/chat/completions", content=body, headers={"content-type": "application/json"}
                ).json()

            def node():
                return run(config, small)

            bare(), node()
            bare_t, node_t = [], []
            for _ in range(repeats):
                bare_t.append(measure_once(bare))
                node_t.append(measure_once(node))
    finally:
        server.shutdown()
        server.server_close()
    overhead = [n - b for n, b in zip(node_t, bare_t, strict=True)]
    return [
        Row(
            "openai node run (prompt, SDK, call, validate) against a local fake answering at once",
            "—",
            node_t,
            "ms",
            baseline=bare_t,
            baseline_name="direct httpx call",
        ),
        Row(
            "openai path overhead beyond the HTTP round trip (paired, per call)",
            "≤ 15 ms per call",
            overhead,
            "ms",
            limit=15.0,
        ),
    ]


def rows(repeats: int = REPEATS, n_procs: int = 500, n_alerts: int = 200) -> list[Row]:
    return local_rows(repeats, n_procs, n_alerts) + openai_rows(repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    add_output_args(parser)
    args = parser.parse_args()
    emit(rows(args.repeats), args, "intelligence", f"{args.repeats} repeats each, after one warm-up call.")


if __name__ == "__main__":
    main()
