"""On SQLite, a run of a `pipeline serve` killed mid-run ends Crashed by the next serve's heartbeat watch.

Real parts: `prefect server start` on SQLite with its services (the user's default) and its
log checked with no allowance for "database is locked"; `pipeline serve` processes; a run
held in a slow check node on a loopback HTTP target; SIGKILL of the serving process group.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import pytest
from support.prefect_server import BIN, PrefectServer
from support.waiting import wait_for
from test_deploy import ROOT
from test_faults_worker import Target

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

WINDOW = 35  # the least deployments.crashes allows
NAME = "held"


def definition(url: str) -> dict:
    return {
        "name": NAME,
        "version": "1.0",
        "on_failure": [
            {"driver": "webhook", "url": f"{url}/hook", "title": "{{ run.definition }}: {{ run.status }}"}
        ],
        "nodes": [
            {
                "id": "wait",
                "type": "check",
                "timeout_seconds": 115,
                "config": {"http": [{"url": f"{url}/slow", "timeout": 110}]},
            }
        ],
    }


@pytest.fixture
def server(tmp_path):
    prefect = PrefectServer(tmp_path / "prefect-home").start()
    try:
        yield prefect
    finally:
        prefect.stop()
    prefect.assert_clean_log(sqlite_lock=False)  # no "database is locked": no automation is evaluated


def test_a_run_of_a_killed_serve_ends_crashed_by_the_next_serve_told_once_with_no_automation(
    server, tmp_path
):
    from prefect.client.orchestration import SyncPrefectClient, get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from deployments.crashes import crash_automation, ensure_crash_automation

    target = Target()
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    (definitions / f"{NAME}.json").write_text(json.dumps(definition(target.url)))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API_URL")}
    env.update(
        PREFECT_API_URL=server.api_url,
        PREFECT_HOME=str(tmp_path / "client-home"),
        OPSFLOW_DEFINITIONS_DIR=str(definitions),
        OPSFLOW_CRASH_AFTER_SECONDS=str(WINDOW),
    )
    automation = crash_automation()["name"]

    async def automate() -> None:  # as an earlier `pipeline serve` left it
        async with get_client() as client:
            await ensure_crash_automation(client, within=WINDOW)

    with temporary_settings({PREFECT_API_URL: server.api_url}):
        asyncio.run(automate())

    def serve(name: str) -> subprocess.Popen:
        with open(tmp_path / f"{name}.log", "w") as log:
            return subprocess.Popen(
                [str(BIN / "pipeline"), "serve"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    first = serve("first")
    second = None
    try:
        with SyncPrefectClient(server.api_url) as client:
            assert client.read_automations_by_name(automation)
            wait_for(
                lambda: not client.read_automations_by_name(automation), 120, "serve to remove it", every=0.5
            )
            deployment = client.read_deployment_by_name(f"run-pipeline/{NAME}")
            run = client.create_flow_run_from_deployment(deployment.id, parameters={"definition": NAME})
            wait_for(lambda: target.slow_hits, 120, "the run to reach its slow node", every=0.5)
            assert client.read_flow_run(run.id).state.is_running()
            os.killpg(first.pid, signal.SIGKILL)  # the serving process and the run inside it
            first.wait(timeout=30)
            killed_at = time.monotonic()

            second = serve("second")
            crashed = wait_for(
                lambda: (s := client.read_flow_run(run.id).state).is_crashed() and s,
                WINDOW + 120,
                "the next serve to mark the run Crashed",
                every=0.5,
            )
            crash_seconds = time.monotonic() - killed_at
            assert crashed.message == (
                f"Flow run marked Crashed: no heartbeat for {WINDOW} s (its worker or serving process died)"
            )
            wait_for(lambda: target.hooks, 60, "the on_failure notification", every=0.5)
            time.sleep(12)  # another crash check: nobody tells it again
            assert [hook["title"] for hook in target.hooks] == [f"{NAME}: crashed"]
            assert client.read_automations_by_name(automation) == []
    finally:
        target.release.set()
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
    print(f"\nrun Crashed {crash_seconds:.0f} s after the kill (window {WINDOW} s)")
