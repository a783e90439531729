"""Benchmark: alerts ingested per second (parse + store) into SQLite and PostgreSQL.

Each delivery is an Alertmanager payload of 100 alerts run through the `ingest` node
(`run(config, ctx)`), first as new groups, then re-delivered (the repeat_interval case).
PostgreSQL: --postgres URL, else $OPSFLOW_TEST_POSTGRES_URL, else postgres@127.0.0.1:5432;
a throw-away database is created and dropped, and the rows say "skipped" when none answers.
Usage: python bench/ingest.py [--repeats 5] [--postgres URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pg import DEFAULT_ADMIN_URL, admin_url_from_env, temporary_database  # noqa: E402
from bench.report import Row, add_output_args, emit  # noqa: E402

BATCH = 100
BATCHES = 20
GOAL = 5000


def payload(group: str, size: int = BATCH) -> dict:
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
            for i in range(size)
        ],
    }


def measure(url: str, groups: list[str], batch: int) -> float:
    """Alerts per second for one delivery of each group."""
    from nodes.base import NodeContext, RunInfo
    from nodes.ingest.node import Config, run

    config = Config(database_url=url)
    payloads = [payload(g, batch) for g in groups]
    started = time.perf_counter()
    for body in payloads:
        run(config, NodeContext(run=RunInfo(trace_id="bench"), payload=body))
    return len(payloads) * batch / (time.perf_counter() - started)


def bench(url: str, repeats: int, batch: int, batches: int) -> tuple[list[float], list[float]]:
    from nodes.base import NodeContext, RunInfo
    from nodes.incidents import store
    from nodes.ingest.node import Config, run

    try:
        run(Config(database_url=url), NodeContext(run=RunInfo(trace_id="w"), payload=payload("warm", batch)))
        new, repeat = [], []
        for r in range(repeats):
            groups = [f"bench-{r}-{b}" for b in range(batches)]
            new.append(measure(url, groups, batch))
            repeat.append(measure(url, groups, batch))
        return new, repeat
    finally:
        store.dispose_engines()


def pair(where: str, new: list[float], repeat: list[float], note: str = "", batch: int = BATCH) -> list[Row]:
    goal = f"≥ {GOAL:,} alerts/s (batches of 100)"
    return [
        Row(
            f"ingest into {where}, new groups, batches of {batch}",
            goal,
            new,
            "alerts/s",
            "higher",
            GOAL,
            note=note,
        ),
        Row(
            f"ingest into {where}, repeat deliveries, batches of {batch}",
            goal,
            repeat,
            "alerts/s",
            "higher",
            GOAL,
            note=note,
        ),
    ]


def rows(
    repeats: int = 5, batch: int = BATCH, batches: int = BATCHES, postgres: str | None = None
) -> list[Row]:
    """SQLite always; PostgreSQL when `postgres` (an admin URL) answers, else two skipped rows."""
    import psycopg

    with tempfile.TemporaryDirectory() as tmp:
        result = pair(
            "SQLite (WAL)", *bench(f"sqlite:///{tmp}/bench.db", repeats, batch, batches), batch=batch
        )
    if postgres is None:
        return result
    try:
        with temporary_database(postgres, "opsflow_bench_ingest") as database:
            new, repeat = bench(database.url("psycopg"), repeats, batch, batches)
    except psycopg.OperationalError as exc:
        return result + pair(
            "PostgreSQL", [], [], f"PostgreSQL unreachable ({str(exc).splitlines()[0]})", batch
        )
    return result + pair("PostgreSQL", new, repeat, batch=batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--postgres", default=admin_url_from_env() or DEFAULT_ADMIN_URL, help="admin URL")
    add_output_args(parser)
    args = parser.parse_args()
    intro = (
        f"Batches of {BATCH} alerts, {BATCHES} batches per repeat, {args.repeats} repeats "
        "(median (min–max)); each batch runs the ingest node (parse + store)."
    )
    emit(rows(args.repeats, postgres=args.postgres), args, "ingest", intro)


if __name__ == "__main__":
    main()
