"""Benchmark the intelligence node: prompt + local analysis on a large run, and the openai path's overhead.

Run: .venv/bin/python bench/intelligence.py   (prints a Markdown table)
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from nodes.base import NodeContext, RunInfo
from nodes.intelligence.local import Config as LocalConfig
from nodes.intelligence.local import analyze
from nodes.intelligence.node import Config, run
from nodes.intelligence.prompt import build_prompt

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


def measure(fn, repeats: int = REPEATS) -> list[float]:
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


def fmt(times: list[float]) -> str:
    return f"{statistics.median(times):.2f} ms ({min(times):.2f}–{max(times):.2f})"


def main() -> None:
    ctx = big_context()
    rows = []
    prompt_t = measure(lambda: build_prompt(ctx, max_input_tokens=8000))
    local_t = measure(lambda: analyze(LocalConfig(), ctx))
    both_t = measure(lambda: (build_prompt(ctx, max_input_tokens=8000), analyze(LocalConfig(), ctx)))
    rows.append(("prompt build (500 processes, 200 alerts, 8k budget)", "—", fmt(prompt_t)))
    rows.append(("local analysis (same context)", "—", fmt(local_t)))
    rows.append(("prompt build + local analysis", "<= 20 ms", fmt(both_t)))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/v1"
    config = Config.model_validate({"provider": "openai", "base_url": base, "api_key": "sk-bench"})
    small = small_context()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 2000}]})
    # both sides reuse a pooled keep-alive connection, as the node does between calls;
    # measured interleaved so machine load hits both alike
    bare_client = httpx.Client()
    bare = lambda: bare_client.post(  # noqa: E731
        f"{base}/chat/completions", content=body, headers={"content-type": "application/json"}
    ).json()
    node = lambda: run(config, small)  # noqa: E731
    bare(), node()
    bare_t, node_t, overhead = [], [], []
    for _ in range(REPEATS):
        b = measure_once(bare)
        n = measure_once(node)
        bare_t.append(b)
        node_t.append(n)
        overhead.append(n - b)
    rows.append(("bare httpx round trip (pooled connection)", "—", fmt(bare_t)))
    rows.append(("openai node run (prompt, SDK, call, validate)", "—", fmt(node_t)))
    rows.append(("openai path overhead beyond the round trip", "<= 15 ms", fmt(overhead)))
    server.shutdown()

    print(f"| figure | goal | measured median (min–max) over {REPEATS} repeats |")
    print("| --- | --- | --- |")
    for figure, goal, measured in rows:
        print(f"| {figure} | {goal} | {measured} |")


if __name__ == "__main__":
    main()
