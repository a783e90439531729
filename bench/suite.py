"""Every benchmark in one table, written to bench/RESULTS.md with the machine it ran on (`bench/run`).

Each bench module runs in a process of its own (Prefect reads its settings once, at
import, and several benches point it at different servers) and hands back its rows
as JSON. Sizes are cut so the whole suite takes a few minutes on 2 CPUs; every figure
is measured at least 5 times.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.pg import DEFAULT_ADMIN_URL, admin_url_from_env, server_version  # noqa: E402
from bench.report import Row, load_rows, render_table  # noqa: E402

RESULTS = ROOT / "bench" / "RESULTS.md"
RECEIVER_ALERTS, RECEIVER_SECONDS = 1000, 2.0
# journaled bursts wait until Prefect has every run (~30 runs/s here): smaller, same 500/s offered
JOURNAL_ALERTS, JOURNAL_SECONDS = 500, 1.0
# each alert waits for its notification: under 1 s on either database here
LATENCY_ALERTS = 30


def plan(postgres: str | None) -> list[tuple[str, list[str]]]:
    """(module, arguments) in running order: the quick in-process ones first."""
    on_postgres = ["--postgres", postgres] if postgres else []
    return [
        ("intelligence", ["--repeats", "30"]),
        ("notify", ["--channels", "50", "--repeats", "7"]),
        ("ingest", ["--repeats", "5", "--postgres", postgres or DEFAULT_ADMIN_URL]),
        ("core", ["--repeats", "5", "--cli-repeats", "5"]),
        (
            "receiver",
            [
                "--alerts",
                str(RECEIVER_ALERTS),
                "--seconds",
                f"{RECEIVER_SECONDS:g}",
                "--repeats",
                "5",
                *on_postgres,
            ],
        ),
        (
            "receiver",
            [
                *("--alerts", str(JOURNAL_ALERTS), "--seconds", f"{JOURNAL_SECONDS:g}", "--repeats", "5"),
                *("--journal", *on_postgres),
            ],
        ),
        # the default server (SQLite) always, side by side with PostgreSQL when there is one
        ("latency", ["--alerts", str(LATENCY_ALERTS)]),
        *([("latency", ["--alerts", str(LATENCY_ALERTS), *on_postgres])] if postgres else []),
    ]


def run_module(module: str, args: list[str], work: Path) -> tuple[list[Row], float]:
    out = work / f"{module}.json"
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"{module}.py"), *args, "--json", str(out)], cwd=ROOT
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        failed = Row(
            f"bench/{module}.py did not finish (exit {done.returncode}; its error is above)", "—", [], ""
        )
        failed.source = module
        return [failed], elapsed
    return load_rows(out), elapsed


def hide_password(text: str) -> str:
    return re.sub(r"(://[^:/@\s]+):[^@\s]+@", r"\1:***@", text)


def machine(postgres: str | None) -> list[tuple[str, str]]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    processors = len(re.findall(r"^processor\s*:", cpuinfo, re.M)) or os.cpu_count()
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.M)
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)', os_release, re.M)
    where = server_version(postgres) if postgres else "SQLite"
    prefect_db = (
        f"receiver and latency: {where}"
        + (f" at {hide_password(postgres)} (a fresh database per run, dropped after)" if postgres else "")
        + "; core figures: SQLite (the local server, `prefect server start` and the ephemeral default)"
    )
    return [
        ("CPU", f"{models[0] if models else platform.processor() or '?'} × {processors} (/proc/cpuinfo)"),
        ("memory", f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?"),
        ("OS", f"{pretty.group(1) if pretty else platform.system()}, kernel {platform.release()}"),
        ("Python", platform.python_version()),
        ("Prefect", importlib.metadata.version("prefect")),
        ("Prefect server database", prefect_db),
        ("incident store (ingest)", "SQLite (WAL) and PostgreSQL, a fresh database each"),
    ]


def git_commit() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    dirty = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    if not dirty:
        return commit
    shown = ", ".join(dirty[:6]) + (f" and {len(dirty) - 6} more" if len(dirty) > 6 else "")
    return f"{commit}, with uncommitted changes to {shown}"


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def summary(rows: list[Row]) -> str:
    verdicts = [row.verdict() for row in rows]
    counts = {v: verdicts.count(v) for v in ("meets", "misses", "skipped")}
    measured_only = verdicts.count("—")
    return (
        f"{counts['meets']} goals met, {counts['misses']} missed, {counts['skipped']} skipped; "
        f"{measured_only} figures are measured without a goal of their own."
    )


def document(rows: list[Row], facts: list[tuple[str, str]], command: str) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}`; re-run it to refresh this file. {summary(rows)}",
        "",
        "`measured` is the median of the samples (or the percentile it names), `min–max` their range,",
        "`n` how many samples; `ratio` compares medians with the baseline named (bare Prefect or a",
        "direct call), and the verdict compares the measured figure (or that ratio) with the goal of",
        "the issue the figure comes from. Sizes are those of `bench/run`; each `bench/*.py` also runs",
        "alone with the issues' full sizes (e.g. the receiver's 5,000 alerts over 10 s).",
        "",
        render_table(rows, with_source=True),
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
        *[f"| {name} | {value} |" for name, value in facts],
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--postgres",
        default=admin_url_from_env(),
        help="admin URL of a PostgreSQL server: the receiver and latency benches run Prefect's server on a "
        "fresh database there (default $OPSFLOW_TEST_POSTGRES_URL; without either, on SQLite)",
    )
    parser.add_argument(
        "--only", help="comma-separated bench names to run; prints, does not write RESULTS.md"
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="where to write the results (bench/RESULTS.md)"
    )
    args = parser.parse_args()
    command = hide_password(shlex.join(["bench/run", *sys.argv[1:]]))
    chosen = plan(args.postgres)
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {name for name, _ in chosen}
        if unknown:
            parser.error(
                f"unknown bench {', '.join(sorted(unknown))}; known: {', '.join(n for n, _ in chosen)}"
            )
        chosen = [(name, module_args) for name, module_args in chosen if name in names]

    began = time.perf_counter()
    load_before = load()
    started_at = datetime.datetime.now(datetime.UTC)
    rows: list[Row] = []
    timings = []
    with tempfile.TemporaryDirectory(prefix="opsflow-bench-run-") as tmp:
        for name, module_args in chosen:
            print(
                f"# bench/{name}.py {hide_password(shlex.join(module_args))} …", file=sys.stderr, flush=True
            )
            made, elapsed = run_module(name, module_args, Path(tmp))
            rows.extend(made)
            timings.append(f"{name} {elapsed:.0f} s")
            print(f"# bench/{name}.py done in {elapsed:.0f} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - began

    print(render_table(rows, with_source=True))
    print(f"\n{summary(rows)} Whole run {total:.0f} s ({', '.join(timings)}).")
    if args.only:
        return
    facts = [
        *machine(args.postgres),
        ("date", f"{started_at:%Y-%m-%d %H:%M} UTC"),
        ("git commit", git_commit()),
        ("command", f"`{command}`"),
        ("load average (1/5/15 min)", f"{load_before} at the start, {load()} at the end"),
        ("duration", f"{total:.0f} s ({', '.join(timings)})"),
    ]
    args.out.write_text(document(rows, facts, command))
    print(f"Written to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}.")
    if any(row.verdict() == "skipped" and "did not finish" in row.figure for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
