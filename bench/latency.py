"""Alert POST → notification received, through `pipeline serve --receiver` (issue 7's latency goal).

Starts a local Prefect server, then `pipeline serve --receiver` with a definition
ingest → context → local analysis → webhook notify pointed at a sink in this process,
posts N distinct Alertmanager alerts one after another and times each until its
notification reaches the sink. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    """A webhook target that remembers when each alert's notification arrived."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.event = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
                with sink.event:
                    for word in body.replace('"', " ").split():
                        if word.startswith("LAT"):
                            sink.arrived.setdefault(word.strip(".,:;()"), time.perf_counter())
                    sink.event.notify_all()
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait_for(self, key: str, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        with self.event:
            while key not in self.arrived and time.perf_counter() < deadline:
                self.event.wait(timeout=0.05)
        return self.arrived.get(key)


def definition(sink_url: str) -> dict:
    notify = {"driver": "webhook", "url": sink_url, "title": "{{ incident.title }}"}
    return {
        "name": "latency",
        "version": "1.0",
        "nodes": [
            {"id": "ingest", "type": "ingest", "next": "context"},
            {
                "id": "context",
                "type": "context",
                "required": False,
                "config": {"include": ["cpu"]},
                "next": "analyze",
            },
            {"id": "analyze", "type": "intelligence", "config": {"provider": "local"}, "next": "notify"},
            {"id": "notify", "type": "notify", "config": notify},
        ],
    }


def alert(key: str) -> dict:
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{key}"}}',
        "status": "firing",
        "receiver": "opsflow",
        "groupLabels": {"alertname": key},
        "commonLabels": {"alertname": key, "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": key, "instance": "db-01", "severity": "critical"},
                "annotations": {"summary": f"{key} fired"},
                "startsAt": "2026-11-23T08:00:00Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
                "fingerprint": key.lower()[:16],
            }
        ],
    }


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server for Prefect's database")
    args = parser.parse_args()
    import httpx

    work = Path(tempfile.mkdtemp(prefix="opsflow-latency-"))
    os.environ["PREFECT_HOME"] = str(work / "prefect")
    os.environ["OPSFLOW_DATABASE_URL"] = f"sqlite:///{work / 'incidents.db'}"
    os.environ.pop("PREFECT_API_URL", None)
    if args.postgres:
        import psycopg

        name = f"opsflow_latency_{os.getpid()}"
        with psycopg.connect(args.postgres, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        base = args.postgres.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        os.environ["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = f"{base}/{name}"
    from flows.server import start_local_server
    from flows.settings import apply_prefect_defaults

    apply_prefect_defaults()
    server = start_local_server()
    sink = Sink()
    (work / "definitions").mkdir()
    (work / "definitions" / "latency.json").write_text(json.dumps(definition(sink.url)))
    port = free_port()
    env = {**os.environ, "OPSFLOW_DEFINITIONS_DIR": str(work / "definitions")}
    serve = None
    try:
        server.wait_ready()
        serve = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "pipeline"),
                "serve",
                "--receiver",
                "--port",
                str(port),
                "--poll",
                "0.2",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=open(work / "serve.log", "w"),  # noqa: SIM115 - lives as long as the process
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/definitions/latency", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        refused = 0
        # one warm-up alert: the serving process imports the node modules on its first run
        for key in ["LATWARMUP", *[f"LAT{i:04d}" for i in range(args.alerts)]]:
            started = time.perf_counter()
            for _ in range(10):  # like Alertmanager: a 503 is retried
                response = httpx.post(f"{url}/pipeline?definition=latency", json=alert(key), timeout=30)
                if response.status_code != 503:
                    break
                refused += 1
                time.sleep(1)
            assert response.status_code == 202, response.text
            arrived = sink.wait_for(key, timeout=60)
            if key != "LATWARMUP":
                sink.arrived[key] = (arrived - started) if arrived else float("inf")
        latencies = [sink.arrived[f"LAT{i:04d}"] for i in range(args.alerts)]
        lost = sum(1 for v in latencies if v == float("inf"))
        done = [v for v in latencies if v != float("inf")]
        print("| figure | goal | measured |")
        print("| --- | --- | --- |")
        p50, p95 = pct(done, 0.5), pct(done, 0.95)
        print(f"| alert POST → notification at sink, p50 ({len(done)} alerts) | ≤ 1.0 s | {p50:.3f} s |")
        print(f"| same, p95 | ≤ 2.0 s | {p95:.3f} s |")
        spread = f"{min(done):.3f} – {max(done):.3f} s (mean {statistics.mean(done):.3f})"
        print(f"| same, min – max | — | {spread} |")
        print(f"| notifications never received | 0 | {lost} |")
        print(f"| 503 answers retried by the sender | — | {refused} |")
        print(f"| Prefect server database | — | {'PostgreSQL' if args.postgres else 'SQLite'} |")
        print(f"\nMachine: {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()}")
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=30)
        server.stop()


if __name__ == "__main__":
    main()
