"""Flow runs timed in a child process pointed at one Prefect server: opsflow against a bare Prefect chain.

Prefect reads its settings once, at import, so each server gets a process of its own:
`run_child` starts this file with the server's PREFECT_API_URL / PREFECT_HOME, and
the child writes its samples (seconds) as JSON.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.servers import base_env  # noqa: E402

TRIVIAL = {"expression": "`1`"}
ALERTS_PER_PAYLOAD = 100
# sizes per mode: chain lengths (the first two also warm up) and whether alert-triage runs;
# "shipped" times only the bare chain, in a process that never imports opsflow's flow (which
# mends Prefect's clients for the whole process: flows.settings.share_api_tls_contexts)
MODES = {"ratio": ([0, 10, 100], True), "wall3": ([3], False), "shipped": ([0, 10, 100], False)}
# as flows.pipeline.MAX_CONCURRENT_NODES (not imported: see "shipped")
THREADS = 16


def chain(n: int, name: str, explicit_next: bool = False) -> dict:
    """A definition of `n` transform nodes run one after another."""
    nodes = []
    for i in range(n):
        node = {"id": f"n{i}", "type": "transform", "config": dict(TRIVIAL)}
        if explicit_next and i + 1 < n:
            node["next"] = f"n{i + 1}"
        nodes.append(node)
    return {"name": name, "version": "1.0", "description": f"{n} trivial nodes", "nodes": nodes}


def write_definitions(defs_dir: Path) -> None:
    for n in (1, 3, 10, 100):
        (defs_dir / f"chain-{n}.json").write_text(json.dumps(chain(n, f"chain-{n}")))
    shipped = ROOT / "definitions" / "alert-triage.json"
    (defs_dir / "alert-triage.json").write_text(shipped.read_text())


def child(out_path: str, mode: str, defs_dir: str, repeats: int) -> None:
    """Runs inside a process whose PREFECT_API_URL / PREFECT_HOME point at one server."""
    import asyncio
    import os

    os.environ["OPSFLOW_DEFINITIONS_DIR"] = defs_dir
    from flows.settings import apply_prefect_defaults

    apply_prefect_defaults(quiet_console=True)

    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    @task(cache_policy=NO_CACHE, persist_result=False, log_prints=False)
    def bare_step(i: int) -> int:
        return i

    @flow(
        name="bare-chain",
        task_runner=ThreadPoolTaskRunner(max_workers=THREADS),
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

    from flows.history import wait_for_task_runs

    def settle(flow_run_id, task_runs: int) -> None:
        """Untimed: wait until the server has recorded the run's task runs, as `pipeline run` does.

        Back to back, the next run's create would meet those writes on SQLite: a 503 and
        Prefect's client's 2 s back-off, for bare Prefect and opsflow alike.
        """
        if task_runs:
            asyncio.run(wait_for_task_runs(str(flow_run_id), task_runs, timeout=30))

    def time_bare(n: int) -> float:
        started = time.perf_counter()
        state = asyncio.run(bare_chain(n, return_state=True))
        elapsed = time.perf_counter() - started
        assert state.is_completed() and state.result() == n, state
        settle(state.state_details.flow_run_id, n)
        return elapsed

    sizes, triage = MODES[mode]
    results: dict[str, list[float]] = {}
    if mode == "shipped":
        for n in sizes[:2]:
            time_bare(n)
        for n in sizes:
            results[f"bare-{n}"] = [time_bare(n) for _ in range(repeats)]
        Path(out_path).write_text(json.dumps(results))
        return

    from bench.ingest import payload
    from flows.pipeline import MAX_CONCURRENT_NODES, run_pipeline

    assert MAX_CONCURRENT_NODES == THREADS, "bench/core_flows.THREADS: keep it the flow's"

    def time_run(**parameters) -> tuple[float, dict]:
        started = time.perf_counter()
        state = asyncio.run(run_pipeline(**parameters, return_state=True))
        elapsed = time.perf_counter() - started
        result = state.result(raise_on_failure=False)
        assert isinstance(result, dict) and result["status"] == "completed", (state, result)
        settle(state.state_details.flow_run_id, len(result["executed_nodes"]))
        return elapsed, result

    def time_opsflow(n: int) -> float:
        elapsed, result = time_run(definition=f"chain-{max(n, 1)}", skip=["n0"] if n == 0 else None)
        assert len(result["executed_nodes"]) == n, result["executed_nodes"]
        return elapsed

    for n in sizes[:2]:
        # warm-up: imports, flow and task registration, first connections (a 100-node
        # warm-up would add ~35 s and warm nothing the 10-node one has not)
        time_bare(n)
        time_opsflow(n)
    for n in sizes:
        for _ in range(repeats):  # interleaved, so drift hits both kinds alike
            results.setdefault(f"bare-{n}", []).append(time_bare(n))
            results.setdefault(f"opsflow-{n}", []).append(time_opsflow(n))
    if triage:
        for i in range(repeats + 1):  # the first one warms up the ingest, context and notify modules
            body = payload(f"triage-{i}-{time.time_ns()}", ALERTS_PER_PAYLOAD)
            elapsed, result = time_run(definition="alert-triage", payload=body)
            assert "console" in result["executed_nodes"], result["executed_nodes"]
            if i:
                results.setdefault("alert-triage", []).append(elapsed)
    Path(out_path).write_text(json.dumps(results))


def run_child(
    mode: str, api_url: str, home: str, defs_dir: str, work: Path, repeats: int
) -> dict[str, list[float]]:
    out = work / f"child-{mode}.json"
    env = {
        **base_env(),
        "PREFECT_API_URL": api_url,
        "PREFECT_HOME": home,
        "OPSFLOW_DATABASE_URL": f"sqlite:///{work / f'incidents-{mode}.db'}",
    }
    env.pop("SLACK_WEBHOOK_URL", None)  # alert-triage notifies the console, as with no settings
    done = subprocess.run(
        [sys.executable, __file__, out, mode, defs_dir, str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {mode} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
