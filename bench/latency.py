"""Alert POST → notification received, through `pipeline serve --receiver` (issue 7's latency goal).

Starts a local Prefect server, then `pipeline serve --receiver` with a definition
ingest → context → local analysis → webhook notify pointed at a sink in this process,
posts N distinct Alertmanager alerts one after another and times each until its
notification reaches the sink. Prefect's server runs on SQLite, or on a fresh
PostgreSQL database (created and dropped) with --postgres.
Usage: ./dev python bench/latency.py [--alerts 50] [--postgres URL]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import Row, add_output_args, emit  # noqa: E402
from bench.servers import free_port, prefect_server  # noqa: E402

RETRIES_ON_503 = 10


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
        "triggers": [{"webhook": {}}],  # the receiver runs only definitions that declare one
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


def measure(work: Path, alerts: int) -> tuple[list[float], list[float], int]:
    """Latencies (seconds; inf for a notification that never came), the POST → 202 part of each,
    and the 503s the sender retried.

    Runs against the Prefect API this process's environment points at.
    """
    import httpx

    sink = Sink()
    (work / "definitions").mkdir()
    (work / "definitions" / "latency.json").write_text(json.dumps(definition(sink.url)))
    port = free_port()
    env = {**os.environ, "OPSFLOW_DEFINITIONS_DIR": str(work / "definitions")}
    command = [str(Path(sys.executable).parent / "pipeline"), "serve", "--receiver", "--port", str(port)]
    with open(work / "serve.log", "w") as log:
        serve = subprocess.Popen([*command, "--poll", "0.2"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/definitions/latency", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        refused = 0
        latencies, accepted = [], []
        # one warm-up alert: the serving process imports the node modules on its first run
        for key in ["LATWARMUP", *[f"LAT{i:04d}" for i in range(alerts)]]:
            started = time.perf_counter()
            for _ in range(RETRIES_ON_503):  # like Alertmanager: a 503 is retried
                response = httpx.post(f"{url}/pipeline?definition=latency", json=alert(key), timeout=30)
                if response.status_code != 503:
                    break
                refused += 1
                time.sleep(1)
            assert response.status_code == 202, response.text
            answered = time.perf_counter()
            arrived = sink.wait_for(key, timeout=60)
            if key != "LATWARMUP":
                latencies.append((arrived - started) if arrived else float("inf"))
                accepted.append(answered - started)
        return latencies, accepted, refused
    finally:
        serve.terminate()
        serve.wait(timeout=30)
        sink.server.shutdown()
        sink.server.server_close()


def rows(alerts: int = 50, postgres: str | None = None) -> list[Row]:
    """Must run in a process that has not imported Prefect (the server's settings are set here)."""
    work = Path(tempfile.mkdtemp(prefix="opsflow-latency-"))
    os.environ["OPSFLOW_DATABASE_URL"] = f"sqlite:///{work / 'incidents.db'}"
    try:
        with prefect_server(work, postgres, "opsflow_bench_latency"):
            latencies, accepted, refused = measure(work, alerts)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    done = [v for v in latencies if v != float("inf")]
    where = (
        f"alert POST → notification at a local sink (`pipeline serve --receiver`, {alerts} alerts in turn, "
        f"Prefect on {'PostgreSQL' if postgres else 'SQLite'})"
    )
    return [
        Row(f"{where}: p50", "≤ 1.0 s", done, "s", limit=1.0),
        Row(f"{where}: p95", "≤ 2.0 s", done, "s", limit=2.0, q=0.95),
        Row(f"{where}: of which POST → 202 (the run created), p50", "—", accepted, "s"),
        Row(f"{where}: of which POST → 202, p95", "—", accepted, "s", q=0.95),
        Row(f"{where}: never notified", "0", [float(len(latencies) - len(done))], "", limit=0.0),
        Row(f"{where}: 503s retried by the sender", "—", [float(refused)], ""),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50)
    parser.add_argument("--postgres", help="admin URL of a PostgreSQL server for Prefect's database")
    add_output_args(parser)
    args = parser.parse_args()
    emit(rows(args.alerts, args.postgres), args, "latency")


if __name__ == "__main__":
    main()
