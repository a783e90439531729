"""Benchmark: a burst of distinct alerts at the receiver, each of which must become a flow run.

A local Prefect server (SQLite under a temp PREFECT_HOME, or a fresh PostgreSQL database
with --postgres) and the receiver (uvicorn, its own process) are started; the
`alert-triage` deployment is registered; then `--alerts` distinct Alertmanager payloads
are sent open-loop, evenly over `--seconds` (the goal: 5,000 over 10 s). Every 202's
flow run id is then looked up in Prefect: one missing is a lost alert. A 503 is not a
loss (the sender retries) but is not accepted either. Profile rows show where a
request's time goes. With --journal the receiver answers once an alert is journaled;
each burst then waits until the dispatcher has created every run before counting.
Usage: ./dev python bench/receiver.py [--alerts 5000] [--seconds 10] [--repeats 5] [--postgres URL]
       [--journal]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import Row, add_output_args, emit  # noqa: E402
from bench.sender import send_open_loop  # noqa: E402
from bench.servers import free_port, prefect_server  # noqa: E402

GOAL_RATE = 500.0
GOAL_P99_MS = 100.0


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


def start_receiver(
    api_url: str, concurrency: int | None, journal: Path | None = None
) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PREFECT_API_URL": api_url}
    options = "" if concurrency is None else f", concurrency={concurrency}"
    if journal is not None:
        env["OPSFLOW_DATABASE_URL"] = f"sqlite:///{journal}"
        options += ", journal=True"
    code = (
        "import uvicorn; from deployments.receiver.app import create_app, freeze_heap; "
        f"app = create_app({api_url!r}{options}); freeze_heap(); "
        f"uvicorn.run(app, host='127.0.0.1', port={port}, log_level='error', access_log=False)"
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


def burst(url: str, count: int, seconds: float, tag: str) -> dict:
    """Send `count` alerts open-loop over `seconds`; statuses, latencies and accepted ids
    (flow run ids, or delivery ids from a journal)."""
    import json

    import httpx

    address = httpx.URL(url)
    bodies = [json.dumps(payload(f"Bench{tag}x{i}")).encode() for i in range(count)]
    answers, t0 = asyncio.run(send_open_loop(address.host, address.port, "/pipeline", bodies, seconds))
    latencies = sorted(a.latency for a in answers)
    accepted = [a.body.get("delivery_id") or a.body.get("flow_run_id") for a in answers if a.status == 202]
    # Accepted per second of the offered window, counting only 202s answered by its end plus
    # the p99 goal: at an offered rate equal to the goal, keeping up is exactly meeting it
    # (accepted / wall time could never reach it), and a receiver that falls behind scores
    # only what it answered in time.
    in_time = sum(
        1 for a in answers if a.status == 202 and a.answered_at <= t0 + seconds + GOAL_P99_MS / 1000
    )
    return {
        "accepted": accepted,
        "rate": in_time / seconds,
        "drain": max(a.answered_at for a in answers) - t0 - seconds,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "unavailable": sum(1 for a in answers if a.status == 503),
        "other": sum(1 for a in answers if a.status not in (202, 503)),
    }


def journaled_runs(url: str, delivery_ids: list[str], timeout: float = 900) -> tuple[list[str], float]:
    """Wait until the journal's dispatcher has created every run; the run ids and the seconds it took."""
    import httpx

    started = time.perf_counter()
    with httpx.Client(base_url=url, timeout=60) as client:
        while client.get("/healthz").json()["journal_backlog"] and time.perf_counter() - started < timeout:
            time.sleep(0.5)
        waited = time.perf_counter() - started
        found = [client.get(f"/deliveries/{i}").json().get("flow_run_id") for i in delivery_ids]
    return [run for run in found if run], waited


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

    from deployments.receiver.alerts import idempotency_key, summarize

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
        "parse": [t * 1000 for t in local],
        "read": [t * 1000 for t in reads],
        "create": [t * 1000 for t in creates],
    }


def bursts(
    api_url: str, alerts: int, seconds: float, repeats: int, concurrency: int | None, journal: Path | None
) -> tuple[list, dict]:
    """Deploy alert-triage, start the receiver, send the bursts; per-burst results and the profile."""
    from flows.pipeline import run_pipeline

    async def deploy():
        deployment = await run_pipeline.to_deployment(
            name="alert-triage", parameters={"definition": "alert-triage"}
        )
        return await deployment.apply()

    deployment_id = asyncio.run(deploy())
    receiver, url = start_receiver(api_url, concurrency, journal)
    try:
        results = []
        for repeat in range(repeats):
            result = burst(url, alerts, seconds, f"{repeat}{uuid.uuid4().hex[:6]}")
            runs = result["accepted"]
            if journal is not None:
                runs, result["created_in"] = journaled_runs(url, result["accepted"])
            result["lost"] = len(result["accepted"]) - len(runs) + asyncio.run(missing_runs(runs))
            results.append(result)
            print(
                f"# receiver burst {repeat + 1}/{repeats}: {len(result['accepted'])}/{alerts} accepted, "
                f"{result['unavailable']} × 503, {result['other']} other, {result['lost']} lost, "
                f"p99 {result['p99']:.0f} ms",
                file=sys.stderr,
            )
        return results, asyncio.run(profile(deployment_id))
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


def rows(
    alerts: int = 5000,
    seconds: float = 10.0,
    repeats: int = 5,
    concurrency: int | None = None,
    postgres: str | None = None,
    journal: bool = False,
) -> list[Row]:
    """Must run in a process that has not imported Prefect yet (its server settings are set here)."""
    work = Path(tempfile.mkdtemp(prefix="opsflow-bench-receiver-"))
    os.environ.pop("OPSFLOW_RECEIVER_TOKEN", None)
    try:
        with prefect_server(work, postgres, "opsflow_bench_receiver") as api_url:
            journal_file = work / "journal.db" if journal else None
            results, prof = bursts(api_url, alerts, seconds, repeats, concurrency, journal_file)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    database = f"Prefect on {'PostgreSQL' if postgres else 'SQLite'}"
    mode = "journal" if journal else "direct"
    where = f"{mode}, {alerts:,} alerts over {seconds:g} s, {database}"
    setting = "the receiver's default concurrency" if concurrency is None else f"concurrency {concurrency}"
    drain = statistics.median(r["drain"] for r in results)

    def counts(key: str) -> list[float]:
        return [float(r[key]) for r in results]

    made = [
        Row(
            f"receiver burst ({where}, {setting}): accepted alerts/s",
            f"≥ {GOAL_RATE:.0f}/s accepted",
            [r["rate"] for r in results],
            "/s",
            "higher",
            GOAL_RATE,
            note=f"{alerts / seconds:.0f}/s offered; 202s answered by the window's end + 100 ms, "
            f"÷ the window; last answer {drain:.2f} s after the window (median)",
        ),
        Row(
            f"receiver burst ({where}): accepted (202)",
            f"{alerts:,}",
            [float(len(r["accepted"])) for r in results],
            "",
            "higher",
            float(alerts),
        ),
        Row(
            f"receiver burst ({where}): answered 503", "— (retried by the sender)", counts("unavailable"), ""
        ),
        Row(
            f"receiver burst ({where}): other answers / transport errors", "0", counts("other"), "", limit=0.0
        ),
        Row(f"receiver burst ({where}): latency p50 per request", "—", [r["p50"] for r in results], "ms"),
        Row(
            f"receiver burst ({where}): latency p99 per request",
            f"≤ {GOAL_P99_MS:.0f} ms",
            [r["p99"] for r in results],
            "ms",
            limit=GOAL_P99_MS,
            note="median over bursts of each burst's p99",
        ),
        Row(
            f"receiver burst ({where}): accepted without a flow run (lost)",
            "0",
            counts("lost"),
            "",
            limit=0.0,
        ),
    ]
    if journal:
        made.append(
            Row(
                f"receiver burst ({where}): seconds after the burst until every run was created",
                "— (Prefect's pace)",
                counts("created_in"),
                "s",
            )
        )
    return made + [
        Row("receiver profile: parse + idempotency key, in process", "—", prof["parse"], "ms"),
        Row(
            f"receiver profile: Prefect read deployment, sequential ({database})",
            "—",
            prof["read"],
            "ms",
        ),
        Row(
            f"receiver profile: Prefect create flow run, sequential ({database})",
            "—",
            prof["create"],
            "ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--concurrency", type=int, help="the receiver's concurrent run creations (default: its own default)"
    )
    parser.add_argument(
        "--postgres",
        help="admin URL of a PostgreSQL server for Prefect's database (default: SQLite); "
        "a fresh database is created and dropped",
    )
    parser.add_argument(
        "--journal",
        action="store_true",
        help="run the receiver with its journal (pipeline receiver --journal)",
    )
    add_output_args(parser)
    args = parser.parse_args()
    made = rows(args.alerts, args.seconds, args.repeats, args.concurrency, args.postgres, args.journal)
    emit(made, args, "receiver", f"{args.repeats} bursts; {os.cpu_count()} CPUs.")


if __name__ == "__main__":
    main()
