"""Benchmark: a burst of distinct alerts at the receiver, each of which must become a flow run.

A local Prefect server (SQLite under a temp PREFECT_HOME) and the receiver (uvicorn,
its own process) are started; the `alert-triage` deployment is registered; then
`--alerts` distinct Alertmanager payloads are sent open-loop, evenly over `--seconds`
(the goal: 5,000 over 10 s). Every 202's flow run id is then looked up in Prefect:
one missing is a lost alert. A 503 is not a loss (the sender retries) but is not
accepted either. A profile row shows where a request's time goes.
Usage: python bench/receiver.py [--alerts 5000] [--seconds 10] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="opsflow-bench-receiver-")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("OPSFLOW_RECEIVER_TOKEN", None)

from flows.settings import apply_prefect_defaults  # noqa: E402

apply_prefect_defaults(quiet_console=True)


def payload(name: str) -> dict:
    return {
        "version": "4",
        "receiver": "bench",
        "status": "firing",
        "groupKey": f'{{}}:{{alertname="{name}"}}',
        "groupLabels": {"alertname": name},
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": name, "instance": "db-01", "severity": "critical"},
                "annotations": {"summary": f"{name} on db-01"},
                "startsAt": "2026-11-22T18:22:52Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_receiver(api_url: str, concurrency: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": api_url}
    code = (
        "import uvicorn; from deployments.receiver import create_app; "
        f"uvicorn.run(create_app(concurrency={concurrency}), host='127.0.0.1', port={port}, "
        "log_level='error', access_log=False)"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.terminate()
    raise RuntimeError("the receiver did not become healthy")


async def burst(url: str, count: int, seconds: float, tag: str) -> dict:
    """Send `count` alerts open-loop over `seconds`; statuses, latencies and accepted run ids."""
    import httpx

    limits = httpx.Limits(max_connections=None, max_keepalive_connections=200)
    results: list[tuple[int, float, str | None]] = []
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def send(i: int, at: float) -> None:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            started = time.perf_counter()
            try:
                response = await client.post("/pipeline", json=payload(f"Bench{tag}x{i}"))
                status = response.status_code
                run_id = response.json().get("flow_run_id") if status == 202 else None
            except httpx.HTTPError:
                status, run_id = 0, None
            results.append((status, time.perf_counter() - started, run_id))

        t0 = time.perf_counter() + 0.5
        await asyncio.gather(*(send(i, t0 + i * seconds / count) for i in range(count)))
        wall = time.perf_counter() - t0
    latencies = sorted(r[1] for r in results)
    accepted = [r[2] for r in results if r[0] == 202]
    return {
        "accepted": accepted,
        "rate": len(accepted) / wall,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "unavailable": sum(1 for r in results if r[0] == 503),
        "other": sum(1 for r in results if r[0] not in (202, 503)),
    }


async def missing_runs(run_ids: list[str]) -> int:
    """How many accepted run ids Prefect does not have (lost alerts)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    found = 0
    async with get_client() as client:
        for start in range(0, len(run_ids), 200):
            ids = [uuid.UUID(i) for i in run_ids[start : start + 200]]
            runs = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200
            )
            found += len(runs)
    return len(run_ids) - found


async def profile(deployment_id, samples: int = 20) -> dict:
    """Where one request's time goes: the two Prefect calls `run_deployment` makes, in sequence."""
    from prefect.client.orchestration import get_client

    from deployments._receiver_alerts import idempotency_key, summarize

    reads, creates, local = [], [], []
    async with get_client() as client:
        for i in range(samples):
            body = payload(f"Profile{i}x{uuid.uuid4().hex[:6]}")
            started = time.perf_counter()
            key = idempotency_key("alert-triage", body, summarize(body))
            local.append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.read_deployment_by_name("run-pipeline/alert-triage")
            reads.append(time.perf_counter() - started)
            started = time.perf_counter()
            await client.create_flow_run_from_deployment(
                deployment_id, parameters={"definition": "alert-triage", "payload": body}, idempotency_key=key
            )
            creates.append(time.perf_counter() - started)
    return {
        "parse": statistics.median(local) * 1000,
        "read": statistics.median(reads) * 1000,
        "create": statistics.median(creates) * 1000,
    }


def spread(values: list[float], fmt: str = "{:.1f}") -> str:
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}–{fmt.format(max(values))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=4, help="the receiver's concurrent run creations")
    args = parser.parse_args()

    from flows.server import start_local_server

    server = start_local_server()
    server.wait_ready()
    receiver = None
    try:
        from flows.pipeline import run_pipeline

        async def deploy():
            deployment = await run_pipeline.to_deployment(
                name="alert-triage", parameters={"definition": "alert-triage"}
            )
            return await deployment.apply()

        deployment_id = asyncio.run(deploy())
        receiver, url = start_receiver(server.api_url, args.concurrency)
        rows = []
        for repeat in range(args.repeats):
            result = asyncio.run(burst(url, args.alerts, args.seconds, f"{repeat}{uuid.uuid4().hex[:6]}"))
            result["lost"] = asyncio.run(missing_runs(result["accepted"]))
            rows.append(result)
            print(
                f"# repeat {repeat + 1}: {len(result['accepted'])}/{args.alerts} accepted, "
                f"{result['unavailable']} × 503, {result['other']} other, {result['lost']} lost, "
                f"{result['rate']:.1f}/s, p99 {result['p99']:.0f} ms",
                file=sys.stderr,
            )
        prof = asyncio.run(profile(deployment_id))
    finally:
        if receiver is not None:
            receiver.terminate()
            receiver.wait(timeout=10)
        server.stop()

    offered = args.alerts / args.seconds
    print(
        f"Receiver burst: {args.alerts} distinct alerts over {args.seconds:g} s ({offered:.0f}/s offered), "
        f"{args.repeats} repeats; receiver concurrency {args.concurrency}; local Prefect server on SQLite; "
        f"{os.cpu_count()} CPUs\n"
    )
    print("| figure | goal | measured median (min–max) |")
    print("| --- | --- | --- |")
    print(f"| accepted alerts/s | ≥ 500 | {spread([r['rate'] for r in rows])} |")
    accepted = spread([len(r["accepted"]) for r in rows], "{:.0f}")
    print(f"| accepted (202) of {args.alerts} | {args.alerts} | {accepted} |")
    print(f"| answered 503 (sender retries) | 0 | {spread([r['unavailable'] for r in rows], '{:.0f}')} |")
    print(f"| other answers / transport errors | 0 | {spread([r['other'] for r in rows], '{:.0f}')} |")
    print(f"| latency p50, ms | — | {spread([r['p50'] for r in rows], '{:.0f}')} |")
    print(f"| latency p99, ms | ≤ 100 | {spread([r['p99'] for r in rows], '{:.0f}')} |")
    print(f"| accepted without a flow run (lost) | 0 | {spread([r['lost'] for r in rows], '{:.0f}')} |")
    print(f"| profile: parse + key, ms (in process) | — | {prof['parse']:.2f} |")
    print(f"| profile: Prefect read deployment, ms (sequential) | — | {prof['read']:.0f} |")
    print(f"| profile: Prefect create flow run, ms (sequential) | — | {prof['create']:.0f} |")


if __name__ == "__main__":
    main()
