"""Benchmark: opsflow's own cost on top of Prefect, its flow and CLI wall times, and validation.

Starts two servers of its own (opsflow's LocalServer and a real `prefect server start`, each
with a temporary PREFECT_HOME), measures the flows in child processes of this script (Prefect
reads its settings once, at import) and stops every server at the end, also on error.
Run: .venv/bin/python bench/core.py
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PIPELINE = ROOT / ".venv" / "bin" / "pipeline"
PREFECT = ROOT / ".venv" / "bin" / "prefect"
REPEATS = 5
CLI_REPEATS = 7
TRIVIAL = {"expression": "`1`"}


# ---------------------------------------------------------------- helpers


def stats(values: list[float], unit: str = "ms", scale: float = 1000.0, digits: int = 1) -> str:
    scaled = [v * scale for v in values]
    med = statistics.median(scaled)
    return f"{med:.{digits}f} {unit} ({min(scaled):.{digits}f}–{max(scaled):.{digits}f})"


def verdict(ok: bool) -> str:
    return "✓" if ok else "✗"


def chain(n: int, name: str, explicit_next: bool = False) -> dict:
    """A definition of `n` transform nodes run one after another."""
    nodes = []
    for i in range(n):
        node = {"id": f"n{i}", "type": "transform", "config": dict(TRIVIAL)}
        if explicit_next and i + 1 < n:
            node["next"] = f"n{i + 1}"
        nodes.append(node)
    return {"name": name, "version": "1.0", "description": f"{n} trivial nodes", "nodes": nodes}


def base_env() -> dict[str, str]:
    """This environment without any Prefect setting (each child gets exactly what it needs)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_health(url: str, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited ({process.returncode}) before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


class PrefectServer:
    """`prefect server start` in its own session (it may spawn workers), with its own PREFECT_HOME."""

    def __init__(self, home: str) -> None:
        self.port = free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.log = tempfile.TemporaryFile()
        env = {
            **base_env(),
            "PREFECT_HOME": home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
        }
        self.process = subprocess.Popen(
            [str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(self.port)],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        try:
            wait_health(f"{self.api_url}/health", self.process)
        except RuntimeError:
            self.log.seek(0)
            sys.stderr.write(self.log.read().decode(errors="replace")[-3000:])
            raise

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)  # the group this script created
            self.process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()


def start_local_server(home: str):
    """opsflow's LocalServer (it copies os.environ when it starts), on its own PREFECT_HOME."""
    from flows.server import LocalServer
    from flows.settings import DEFAULTS

    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("PREFECT_")]:
            del os.environ[key]
        os.environ.update(DEFAULTS)
        os.environ["PREFECT_HOME"] = home
        return LocalServer()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 180.0
) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(PIPELINE), *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    return time.perf_counter() - started, done


# ---------------------------------------------------------------- child: flow runs in-process


def child(out_path: str, mode: str, defs_dir: str) -> None:
    """Runs inside a process whose PREFECT_API_URL / PREFECT_HOME point at one server."""
    import asyncio

    os.environ["OPSFLOW_DEFINITIONS_DIR"] = defs_dir
    from flows.settings import apply_prefect_defaults

    apply_prefect_defaults(quiet_console=True)

    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.pipeline import MAX_CONCURRENT_NODES, run_pipeline

    @task(cache_policy=NO_CACHE, persist_result=False, log_prints=False)
    def bare_step(i: int) -> int:
        return i

    @flow(
        name="bare-chain",
        task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_NODES),
        persist_result=False,
        log_prints=False,
    )
    async def bare_chain(n: int) -> int:
        previous = None
        for i in range(n):
            future = bare_step.submit(i, wait_for=[previous] if previous is not None else None)
            future.result()
            previous = future
        return n

    def time_bare(n: int) -> float:
        started = time.perf_counter()
        state = asyncio.run(bare_chain(n, return_state=True))
        elapsed = time.perf_counter() - started
        assert state.is_completed() and state.result() == n, state
        return elapsed

    def time_opsflow(n: int) -> float:
        name = f"chain-{max(n, 1)}"
        started = time.perf_counter()
        state = asyncio.run(run_pipeline(definition=name, skip=["n0"] if n == 0 else None, return_state=True))
        elapsed = time.perf_counter() - started
        result = state.result(raise_on_failure=False)
        assert isinstance(result, dict) and result["status"] == "completed", (state, result)
        assert len(result["executed_nodes"]) == n, result["executed_nodes"]
        return elapsed

    results: dict[str, list[float]] = {}
    if mode == "ratio":
        sizes = [0, 10, 100]
    else:
        sizes = [3]
    for n in sizes[:2]:
        # warm-up: imports, flow and task registration, first connections (a 100-node
        # warm-up would add ~35 s and warm nothing the 10-node one has not)
        time_bare(n)
        time_opsflow(n)
    for n in sizes:
        for _ in range(REPEATS):  # interleaved, so drift hits both kinds alike
            results.setdefault(f"bare-{n}", []).append(time_bare(n))
            results.setdefault(f"opsflow-{n}", []).append(time_opsflow(n))
    Path(out_path).write_text(json.dumps(results))


def run_child(mode: str, api_url: str, home: str, defs_dir: str, work: Path) -> dict[str, list[float]]:
    out = work / f"child-{mode}.json"
    env = {**base_env(), "PREFECT_API_URL": api_url, "PREFECT_HOME": home}
    done = subprocess.run(
        [sys.executable, __file__, "--child", str(out), mode, defs_dir],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


# ---------------------------------------------------------------- figures


def per_node_rows(data: dict[str, list[float]], where: str) -> list[str]:
    rows = []
    empty = {kind: statistics.median(data[f"{kind}-0"]) for kind in ("bare", "opsflow")}
    for n in (10, 100):
        per = {kind: [(t - empty[kind]) / n for t in data[f"{kind}-{n}"]] for kind in ("bare", "opsflow")}
        ratio = statistics.median(per["opsflow"]) / statistics.median(per["bare"])
        paired = [o / b for o, b in zip(per["opsflow"], per["bare"], strict=True)]
        rows.append(
            f"| per-node cost, chain of {n} transform nodes, opsflow ({where}) | ≤ 1.15× bare Prefect "
            f"| {stats(per['opsflow'])} | bare Prefect task chain {stats(per['bare'])}; "
            f"**ratio {ratio:.2f}×** (paired {min(paired):.2f}–{max(paired):.2f}) {verdict(ratio <= 1.15)} |"
        )
    rows.append(
        f"| empty flow run (subtracted above) ({where}) | — | opsflow {stats(data['opsflow-0'])} "
        f"| bare Prefect {stats(data['bare-0'])}; opsflow's empty run = 1 node, skipped |"
    )
    return rows


def wall3_row(data: dict[str, list[float]], where: str) -> str:
    med = statistics.median(data["opsflow-3"])
    return (
        f"| 3-node definition (transform chain), flow run wall time, in-process ({where}) "
        f"| ≤ 0.5 s | {stats(data['opsflow-3'], 's', 1.0, 3)} "
        f"| bare Prefect 3-task chain {stats(data['bare-3'], 's', 1.0, 3)} {verdict(med <= 0.5)} |"
    )


def cli_fast_rows(env: dict[str, str]) -> list[str]:
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
        for _ in range(CLI_REPEATS):
            elapsed, done = run_cli(args, env)
            if done.returncode != 0:
                raise RuntimeError(f"{label} failed: {done.stderr[-2000:]}")
            times.append(elapsed)
        med = statistics.median(times)
        rows.append(
            f"| {label}, process wall time | ≤ 0.3 s | {stats(times, 's', 1.0, 3)} "
            f"| {CLI_REPEATS} runs {verdict(med <= 0.3)} |"
        )
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


def cli_end_to_end_row(env: dict[str, str], home: str) -> str:
    db = Path(home) / "prefect.db"
    times, checks = [], []
    for _ in range(REPEATS):
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
    med = statistics.median(times)
    return (
        f"| `pipeline run --definition health-check`, end to end, ephemeral default (own server "
        f"start/stop each run) | ≤ 6 s | {stats(times, 's', 1.0, 2)} | {verdict(med <= 6.0)}; "
        f"task_run rows / executed nodes per run: {detail} "
        f"{'✓ all recorded, no warning' if complete else '✗ MISSING task runs'} |"
    )


def validate_row() -> str:
    from flows.definition import validate

    raw = chain(500, "big", explicit_next=True)
    for i, node in enumerate(raw["nodes"]):  # distinct expressions: no compile cache hits
        node["config"] = {"expression": f"nodes.n{i - 1}.value || `{i}`"} if i else dict(TRIVIAL)
    started = time.perf_counter()
    validate(raw)
    cold = time.perf_counter() - started
    times = []
    for _ in range(REPEATS + 2):
        started = time.perf_counter()
        pipeline = validate(raw)
        times.append(time.perf_counter() - started)
        assert len(pipeline.nodes) == 500
    med = statistics.median(times)
    return (
        f"| validate a generated 500-node definition (`flows.definition.validate`, in-process) "
        f"| ≤ 50 ms | {stats(times)} | first call (imports, JMESPath compiles) {cold * 1000:.1f} ms "
        f"{verdict(med <= 0.05)} |"
    )


def main() -> None:
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="opsflow-bench-"))
    defs_dir = work / "definitions"
    defs_dir.mkdir()
    for n in (1, 3, 10, 100):
        (defs_dir / f"chain-{n}.json").write_text(json.dumps(chain(n, f"chain-{n}")))
    homes = {name: work / name for name in ("local", "real", "cli")}
    for home in homes.values():
        home.mkdir()
    cli_env = {**base_env(), "PREFECT_HOME": str(homes["cli"])}

    local = real = warmup = None
    rows: list[str] = []
    try:
        # three fresh databases migrate at once (nothing is measured meanwhile)
        local = start_local_server(str(homes["local"]))
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
        setup = time.perf_counter() - began

        rows.append(validate_row())
        rows.extend(cli_fast_rows(cli_env))
        rows.append(cli_end_to_end_row(cli_env, str(homes["cli"])))
        ratio = run_child("ratio", local.api_url, str(homes["local"]), str(defs_dir), work)
        rows[:0] = per_node_rows(ratio, "LocalServer")
        wall = run_child("wall3", real.api_url, str(homes["real"]), str(defs_dir), work)
        rows.insert(3, wall3_row(wall, "`prefect server start`"))
    finally:
        for server in (local, real):
            if server is not None:
                server.stop()
        if warmup is not None and warmup.poll() is None:
            warmup.kill()
            warmup.wait()
        shutil.rmtree(work, ignore_errors=True)

    print("| figure | goal | measured median (min–max) | ratio/notes |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(row)
    print()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"Load average at the end (1/5/15 min): {load} (other processes share these CPUs).  "
        f"Machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]} ({sys.platform}); "
        f"server start + migrations {setup:.0f} s, whole benchmark {time.perf_counter() - began:.0f} s."
    )


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
