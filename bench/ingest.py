"""Benchmark: alerts ingested per second (parse + store) into SQLite and PostgreSQL.

Each delivery is an Alertmanager payload of 100 alerts run through the `ingest` node
(`run(config, ctx)`), first as new groups, then re-delivered (the repeat_interval case).
PostgreSQL comes from $OPSFLOW_TEST_POSTGRES_URL (or postgres@127.0.0.1:5432); a
throw-away database is created and dropped. Usage: python bench/ingest.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nodes.base import NodeContext, RunInfo  # noqa: E402
from nodes.ingest import store  # noqa: E402
from nodes.ingest.node import Config, run  # noqa: E402

BATCH = 100
BATCHES = 20
GOAL = 5000
POSTGRES_URL = os.environ.get("OPSFLOW_TEST_POSTGRES_URL") or "postgresql://postgres@127.0.0.1:5432/postgres"


def payload(group: str) -> dict:
    return {
        "receiver": "bench",
        "status": "firing",
        "groupKey": f'{{}}:{{alertname="{group}"}}',
        "version": "4",
        "alerts": [
            {
                "status": "firing",
                "labels": {
                    "alertname": group,
                    "instance": f"host-{i:03d}",
                    "job": "node",
                    "severity": "critical" if i % 10 == 0 else "warning",
                },
                "annotations": {"summary": "bench", "description": f"host-{i:03d} is unwell"},
                "startsAt": "2026-11-22T18:22:52Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph",
            }
            for i in range(BATCH)
        ],
    }


def measure(url: str, groups: list[str]) -> float:
    """Alerts per second for one delivery of each group."""
    config = Config(database_url=url)
    payloads = [payload(g) for g in groups]
    started = time.perf_counter()
    for body in payloads:
        run(config, NodeContext(run=RunInfo(trace_id="bench"), payload=body))
    return len(payloads) * BATCH / (time.perf_counter() - started)


def bench(url: str, repeats: int) -> tuple[list[float], list[float]]:
    run(Config(database_url=url), NodeContext(run=RunInfo(trace_id="w"), payload=payload("warm")))
    new, repeat = [], []
    for r in range(repeats):
        groups = [f"bench-{r}-{b}" for b in range(BATCHES)]
        new.append(measure(url, groups))
        repeat.append(measure(url, groups))
    return new, repeat


def row(figure: str, values: list[float] | None, note: str = "") -> str:
    if not values:
        return f"| {figure} | >= {GOAL:,} alerts/s | skipped: {note} |"
    spread = f"{statistics.median(values):,.0f} ({min(values):,.0f}–{max(values):,.0f})"
    return f"| {figure} | >= {GOAL:,} alerts/s | {spread} alerts/s |"


def postgres_database():
    """A fresh database URL and its dropper, or (None, reason)."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.Error as exc:
        return None, f"PostgreSQL unreachable ({str(exc).splitlines()[0]})"
    name = f"opsflow_bench_{uuid.uuid4().hex[:8]}"
    admin.execute(f'create database "{name}"')
    p = conninfo_to_dict(POSTGRES_URL)
    password = f":{p['password']}" if p.get("password") else ""
    url = (
        f"postgresql+psycopg://{p.get('user', 'postgres')}{password}@"
        f"{p.get('host', '127.0.0.1')}:{p.get('port', 5432)}/{name}"
    )

    def drop():
        store.dispose_engines()
        admin.execute(f'drop database if exists "{name}" with (force)')
        admin.close()

    return url, drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lines = [
        f"Batches of {BATCH} alerts, {BATCHES} batches per repeat, {args.repeats} repeats "
        "(median (min–max)); each batch runs the ingest node (parse + store).",
        "",
        "| figure | goal | measured median (min–max) |",
        "| --- | --- | --- |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        new, repeat = bench(f"sqlite:///{tmp}/bench.db", args.repeats)
        store.dispose_engines()
    lines.append(row("SQLite (WAL), new groups", new))
    lines.append(row("SQLite (WAL), repeat deliveries", repeat))
    url, drop = postgres_database()
    if url is None:
        lines.append(row("PostgreSQL, new groups", None, drop))
        lines.append(row("PostgreSQL, repeat deliveries", None, drop))
    else:
        try:
            new, repeat = bench(url, args.repeats)
        finally:
            drop()
        lines.append(row("PostgreSQL, new groups", new))
        lines.append(row("PostgreSQL, repeat deliveries", repeat))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
