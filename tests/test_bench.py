"""The benchmarks still run: their row functions, on tiny sizes, give well-formed rows and verdicts.

Timings are never asserted here (speed is for bench/run); only that each bench measures
what it says and that its rows render and round-trip as `bench/run` uses them.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
from pathlib import Path

import pytest

from bench import ingest, intelligence, notify, suite
from bench.pg import temporary_database
from bench.report import Row, emit, load_rows, render_table

BENCH = Path(suite.__file__).resolve().parent


def assert_well_formed(rows: list[Row], samples: int) -> None:
    assert rows
    for row in rows:
        assert row.figure and row.goal and isinstance(row.unit, str)
        assert row.better in ("lower", "higher") and row.goal_on in ("value", "ratio")
        assert len(row.samples) == samples, row.figure
        assert all(isinstance(v, float) and math.isfinite(v) for v in row.samples), row.figure
        assert row.verdict() in ("meets", "misses", "—"), row.figure
        if row.baseline is not None:
            assert len(row.baseline) == samples and row.ratio() > 0
    table = render_table(rows).splitlines()
    assert len(table) == 2 + len(rows)
    assert all(line.count(" | ") == table[0].count(" | ") for line in table)


def test_intelligence_rows_on_a_small_context():
    rows = intelligence.rows(repeats=3, n_procs=20, n_alerts=10)
    assert_well_formed(rows, samples=3)
    by_goal = {row.goal: row for row in rows}
    assert by_goal["≤ 20 ms"].limit == 20.0 and by_goal["≤ 15 ms per call"].limit == 15.0
    assert [row.baseline_name for row in rows if row.baseline] == ["direct httpx call"]
    assert all(v > 0 for row in rows[:3] for v in row.samples)


def test_notify_rows_deliver_every_channel():
    rows = notify.rows(channels=5, repeats=2)  # measure() asserts all 5 reached the sink
    assert_well_formed(rows, samples=2)
    assert all(row.better == "higher" and row.unit == "messages/s" and row.limit == 200.0 for row in rows)


def test_ingest_rows_on_sqlite():
    rows = ingest.rows(repeats=2, batch=5, batches=2, postgres=None)
    assert_well_formed(rows, samples=2)
    assert [row.figure.split(",")[1].strip() for row in rows] == ["new groups", "repeat deliveries"]
    assert all(row.unit == "alerts/s" and min(row.samples) > 0 for row in rows)


@pytest.mark.postgres
def test_ingest_rows_on_postgres_leave_no_database(postgres_admin_url):
    import psycopg

    rows = ingest.rows(repeats=2, batch=5, batches=2, postgres=postgres_admin_url)
    assert_well_formed(rows, samples=2)
    assert sum("PostgreSQL" in row.figure for row in rows) == 2

    def exists(name: str) -> bool:
        with psycopg.connect(postgres_admin_url) as conn:
            return (
                conn.execute("select 1 from pg_database where datname = %s", (name,)).fetchone() is not None
            )

    with temporary_database(postgres_admin_url, "opsflow_test_bench") as database:
        assert exists(database.name)
        assert database.url("asyncpg").endswith(f"/{database.name}")
    assert not exists(database.name)


def test_unreachable_postgres_gives_skipped_rows():
    rows = ingest.rows(repeats=1, batch=2, batches=1, postgres="postgresql://postgres@127.0.0.1:1/postgres")
    skipped = [row for row in rows if row.verdict() == "skipped"]
    assert len(skipped) == 2 and all("unreachable" in row.note for row in skipped)
    assert "skipped" in render_table(rows)


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        (Row("t", "≤ 2", [1.0, 2.0, 3.0], "ms", limit=2.0), "meets"),
        (Row("t", "≤ 1.5", [1.0, 2.0, 3.0], "ms", limit=1.5), "misses"),
        (Row("t", "≥ 3", [1.0, 2.0, 3.0], "/s", "higher", 3.0), "misses"),
        (Row("t", "≤ 3", [1.0, 2.0, 3.0], "s", limit=3.0, q=0.95), "meets"),
        (Row("t", "≤ 2.9", [1.0, 2.0, 3.0], "s", limit=2.9, q=0.95), "misses"),
        (Row("t", "≤ 1.15×", [2.2], "ms", limit=1.15, goal_on="ratio", baseline=[2.0]), "meets"),
        (Row("t", "≤ 1.15×", [2.4], "ms", limit=1.15, goal_on="ratio", baseline=[2.0]), "misses"),
        (Row("t", "≤ 6 s", [1.0], "s", limit=6.0, failed="rows missing"), "misses"),
        (Row("t", "—", [1.0], "s"), "—"),
        (Row("t", "0", [], "", limit=0.0), "skipped"),
    ],
)
def test_verdicts(row: Row, verdict: str):
    assert row.verdict() == verdict


def test_rows_round_trip_through_json(tmp_path, capsys):
    rows = [
        Row(
            "a",
            "≤ 1.15×",
            [2.2, 2.4],
            "ms",
            limit=1.15,
            goal_on="ratio",
            baseline=[2.0, 2.1],
            baseline_name="b",
        ),
        Row("c", "0", [0.0], "", limit=0.0, note="n"),
    ]
    out = tmp_path / "rows.json"
    emit(rows, argparse.Namespace(json=out), "x")
    assert capsys.readouterr().out == ""
    back = load_rows(out)
    assert back == rows and all(row.source == "x" for row in back)
    emit(rows, argparse.Namespace(json=None), "x")
    assert "| 2.30 ms | 2.20–2.40 | 2 | 1.12× b (2.05 ms) | meets |" in capsys.readouterr().out


def test_bench_run_covers_every_bench_module_and_imports_have_no_side_effects():
    home = os.environ.get("PREFECT_HOME")
    with_rows = {
        path.stem for path in BENCH.glob("*.py") if "def rows(" in path.read_text() and path.stem != "suite"
    }
    planned = [name for name, _ in suite.plan("postgresql://u:secret@127.0.0.1:5432/postgres")]
    assert set(planned) == with_rows  # receiver runs twice: direct, then with its journal
    for name in planned:
        module = importlib.import_module(f"bench.{name}")
        assert callable(module.rows) and callable(module.main)
    assert os.environ.get("PREFECT_HOME") == home
    assert suite.hide_password("bench/run --postgres postgresql://u:secret@h/db") == (
        "bench/run --postgres postgresql://u:***@h/db"
    )
    assert os.access(BENCH / "run", os.X_OK)
