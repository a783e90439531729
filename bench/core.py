"""Benchmark: opsflow's own cost on top of Prefect, its flow and CLI wall times, and validation.

Starts two servers of its own (opsflow's LocalServer and a real `prefect server start`, each
with a temporary PREFECT_HOME, both on SQLite), times the flows in child processes
(bench/core_flows.py) and stops every server at the end, also on error.
Run: ./dev python bench/core.py [--repeats 5] [--cli-repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core_flows import ALERTS_PER_PAYLOAD, TRIVIAL, chain, run_child, write_definitions  # noqa: E402
from bench.report import Row, add_output_args, emit  # noqa: E402
from bench.servers import PrefectServer, base_env, local_server_at  # noqa: E402

PIPELINE = ROOT / ".venv" / "bin" / "pipeline"
REPEATS = 5
CLI_REPEATS = 7
# a bare chain in opsflow's process: its clients share one TLS context as opsflow's do
MENDED = "bare Prefect, same client mend"


def ms(values: list[float]) -> list[float]:
    return [v * 1000 for v in values]


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 180.0
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(PIPELINE), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    return time.perf_counter() - started, done


def per_node_rows(data: dict[str, list[float]], shipped: dict[str, list[float]], where: str) -> list[Row]:
    """Per-node cost: a chain's time less the median empty flow run, divided by its length.

    The goal is judged like for like: against a bare chain run interleaved in opsflow's own
    process, whose Prefect clients share one TLS context as opsflow's do
    (flows.settings.share_api_tls_contexts). The note adds bare Prefect as shipped
    (`shipped`, a process without opsflow's flow), which parses its CA bundle per client.
    """
    rows = []
    as_shipped = {k.replace("bare", "shipped"): v for k, v in shipped.items()}
    kinds = {"bare": data, "opsflow": data, "shipped": as_shipped}
    empty = {kind: statistics.median(kinds[kind][f"{kind}-0"]) for kind in kinds}
    for n in (10, 100):
        per = {kind: [(t - empty[kind]) / n for t in kinds[kind][f"{kind}-{n}"]] for kind in kinds}
        paired = [o / b for o, b in zip(per["opsflow"], per["bare"], strict=True)]
        as_is = statistics.median(per["shipped"])
        rows.append(
            Row(
                f"per-node cost, chain of {n} transform nodes, opsflow vs bare Prefect task chain ({where})",
                "≤ 1.15× bare Prefect",
                ms(per["opsflow"]),
                "ms",
                limit=1.15,
                goal_on="ratio",
                baseline=ms(per["bare"]),
                baseline_name=MENDED,
                note=(
                    f"{statistics.median(per['opsflow']) / as_is:.2f}× bare Prefect as shipped "
                    f"({as_is * 1000:.1f} ms, its own process); paired {min(paired):.2f}–{max(paired):.2f}"
                ),
            )
        )
    rows.append(
        Row(
            f"empty flow run, subtracted above ({where})",
            "—",
            ms(data["opsflow-0"]),
            "ms",
            baseline=ms(data["bare-0"]),
            baseline_name=MENDED,
            note="opsflow's empty run is 1 node, skipped",
        )
    )
    return rows


def triage_row(data: dict[str, list[float]], where: str, alerts: int) -> Row:
    return Row(
        f"`alert-triage` flow run on a {alerts}-alert Alertmanager payload, in-process ({where})",
        "— (measured only)",
        data["alert-triage"],
        "s",
        note="ingest → context → local analysis → console notify; a new incident each run",
    )


def wall3_row(data: dict[str, list[float]], where: str) -> Row:
    return Row(
        f"3-node definition (transform chain), flow run wall time, in-process ({where})",
        "≤ 0.5 s",
        data["opsflow-3"],
        "s",
        limit=0.5,
        baseline=data["bare-3"],
        baseline_name="bare Prefect 3-task chain, same client mend",
    )


def cli_fast_rows(env: dict[str, str], repeats: int) -> list[Row]:
    rows = []
    for label, args in (
        ("`pipeline validate` (all definitions)", ["validate"]),
        (
            "`pipeline run --definition health-check --dry-run`",
            ["run", "--definition", "health-check", "--dry-run"],
        ),
    ):
        run_cli(args, env)  # warm-up: page cache, .pyc files
        times = []
        for _ in range(repeats):
            elapsed, done = run_cli(args, env)
            if done.returncode != 0:
                raise RuntimeError(f"{label} failed: {done.stderr[-2000:]}")
            times.append(elapsed)
        rows.append(Row(f"{label}, process wall time", "≤ 0.3 s", times, "s", limit=0.3))
    return rows


def task_run_count(db: Path, flow_run_id: str) -> int:
    """Task runs of one flow run in Prefect's SQLite database (read-only; its server has exited)."""
    query = "select count(*) from task_run where flow_run_id = ?"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (count,) = conn.execute(query, (flow_run_id,)).fetchone()
    finally:
        conn.close()
    return count


def cli_end_to_end_row(env: dict[str, str], home: str, repeats: int) -> Row:
    db = Path(home) / "prefect.db"
    times, checks = [], []
    for _ in range(repeats):
        elapsed, done = run_cli(["run", "--definition", "health-check", "--json"], env)
        if done.returncode != 0:
            raise RuntimeError(f"pipeline run failed ({done.returncode}): {done.stderr[-3000:]}")
        result = json.loads(done.stdout)
        executed = len(result["executed_nodes"])
        recorded = task_run_count(db, result["run_id"])
        warned = "task runs were recorded" in done.stderr
        checks.append((executed, recorded, warned))
        times.append(elapsed)
    complete = all(e == r and not w for e, r, w in checks)
    detail = ", ".join(f"{r}/{e}" for e, r, _ in checks)
    return Row(
        "`pipeline run --definition health-check`, end to end, ephemeral default "
        "(own server start/stop each run, SQLite)",
        "≤ 6 s, all task runs recorded",
        times,
        "s",
        limit=6.0,
        note=f"task_run rows / executed nodes per run: {detail}",
        failed="" if complete else "task runs MISSING from Prefect's database",
    )


def validate_row(repeats: int) -> Row:
    from flows.definition import validate

    raw = chain(500, "big", explicit_next=True)
    for i, node in enumerate(raw["nodes"]):  # distinct expressions: no compile cache hits
        node["config"] = {"expression": f"nodes.n{i - 1}.value || `{i}`"} if i else dict(TRIVIAL)
    started = time.perf_counter()
    validate(raw)
    cold = time.perf_counter() - started
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        pipeline = validate(raw)
        times.append(time.perf_counter() - started)
        assert len(pipeline.nodes) == 500
    return Row(
        "validate a generated 500-node definition (`flows.definition.validate`, in-process)",
        "≤ 50 ms",
        ms(times),
        "ms",
        limit=50.0,
        note=f"first call (imports, JMESPath compiles) {cold * 1000:.0f} ms",
    )


class Phases:
    """Progress on stderr: how long each part of the benchmark took."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self, done: str) -> None:
        now = time.perf_counter()
        print(f"# core: {done} in {now - self.last:.0f} s", file=sys.stderr, flush=True)
        self.last = now


def rows(repeats: int = REPEATS, cli_repeats: int = CLI_REPEATS) -> list[Row]:
    """Every core figure, in the order of issue 3; takes a few minutes (servers, ~25 CLI runs)."""
    work = Path(tempfile.mkdtemp(prefix="opsflow-bench-"))
    defs_dir = work / "definitions"
    defs_dir.mkdir()
    write_definitions(defs_dir)
    homes = {name: work / name for name in ("local", "real", "cli")}
    for home in homes.values():
        home.mkdir()
    cli_env = {**base_env(), "PREFECT_HOME": str(homes["cli"])}

    local = real = warmup = None
    phase = Phases()
    try:
        # three fresh databases migrate at once (nothing is measured meanwhile)
        local = local_server_at(str(homes["local"]))
        real = PrefectServer(str(homes["real"]))
        warmup = subprocess.Popen(
            [str(PIPELINE), "run", "--definition", "health-check"],
            env=cli_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )
        local.wait_ready()
        real.wait_ready()
        _, err = warmup.communicate(timeout=300)
        if warmup.returncode != 0:
            raise RuntimeError(f"warm-up run failed: {err.decode(errors='replace')[-3000:]}")

        phase("servers ready")
        validate = validate_row(repeats + 2)
        cli_fast = cli_fast_rows(cli_env, cli_repeats)
        phase("validate and fast CLI")
        end_to_end = cli_end_to_end_row(cli_env, str(homes["cli"]), repeats)
        phase("end-to-end CLI runs")
        flows = run_child("ratio", local.api_url, str(homes["local"]), str(defs_dir), work, repeats)
        shipped = run_child("shipped", local.api_url, str(homes["local"]), str(defs_dir), work, repeats)
        phase("flow runs on the LocalServer")
        wall = run_child("wall3", real.api_url, str(homes["real"]), str(defs_dir), work, repeats)
        phase("flow runs on `prefect server start`")
    finally:
        for server in (local, real):
            if server is not None:
                server.stop()
        if warmup is not None and warmup.poll() is None:
            warmup.kill()
            warmup.wait()
        shutil.rmtree(work, ignore_errors=True)
    return [
        *per_node_rows(flows, shipped, "LocalServer, SQLite"),
        wall3_row(wall, "`prefect server start`, SQLite"),
        *cli_fast,
        end_to_end,
        validate,
        triage_row(flows, "LocalServer, SQLite", ALERTS_PER_PAYLOAD),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=REPEATS)
    parser.add_argument("--cli-repeats", type=int, default=CLI_REPEATS)
    add_output_args(parser)
    args = parser.parse_args()
    began = time.perf_counter()
    made = rows(args.repeats, args.cli_repeats)
    emit(made, args, "core")
    if not args.json:
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"\nLoad average at the end (1/5/15 min): {load}. {os.cpu_count()} CPUs, "
            f"Python {sys.version.split()[0]}; whole benchmark {time.perf_counter() - began:.0f} s."
        )


if __name__ == "__main__":
    main()
