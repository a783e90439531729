"""Scheduled deployments run for real: Prefect's scheduler service makes the runs, `pipeline serve` runs them.

Against a `prefect server start` with its services (scheduler loop shortened to 1 s), on
SQLite and on PostgreSQL. The scheduler fails in the background when a dependency does not
fit Prefect (sqlalchemy 2.1 did), so the server log is checked for tracebacks as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from datetime import timedelta

import pytest
from pytest_httpserver import HTTPServer
from support.prefect_server import BIN, PrefectServer
from support.waiting import wait_for
from test_deploy import ROOT, sink_definition

pytestmark = pytest.mark.timeout(400)


@pytest.fixture(params=["sqlite", "postgres"])
def scheduling_server(request, tmp_path):
    database_url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    server = PrefectServer(
        tmp_path / "server-home",
        database_url,
        env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"},
    ).start()
    try:
        yield server
    finally:
        server.stop()
    server.assert_clean_log()


def test_the_scheduler_creates_health_check_runs_and_pipeline_serve_completes_one(
    scheduling_server, httpserver: HTTPServer, tmp_path
):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterTags,
    )
    from prefect.client.schemas.schedules import IntervalSchedule

    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    definitions = tmp_path / "definitions"
    definitions.mkdir()
    cron = {"cron": "*/5 * * * *", "timezone": "UTC"}  # the schedule is declared with the definition
    (definitions / "health-check.json").write_text(
        json.dumps({**sink_definition("health-check", httpserver.url_for("/hook")), "triggers": [cron]})
    )
    env = {
        **scheduling_server.env,
        "PREFECT_API_URL": scheduling_server.api_url,
        "PREFECT_HOME": str(tmp_path / "client-home"),
        "OPSFLOW_DEFINITIONS_DIR": str(definitions),
    }
    serve_log = tmp_path / "serve.log"
    with open(serve_log, "w") as log:
        serve = subprocess.Popen(
            [str(BIN / "pipeline"), "serve"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with SyncPrefectClient(scheduling_server.api_url) as client:

            def deployment():
                try:
                    return client.read_deployment_by_name("run-pipeline/health-check")
                except Exception:  # not registered yet
                    assert serve.poll() is None, serve_log.read_text()[-3000:]
                    return None

            health_check = wait_for(
                deployment, 120, "pipeline serve to register run-pipeline/health-check", every=0.5
            )
            assert [s.schedule.cron for s in health_check.schedules] == ["*/5 * * * *"]
            assert health_check.schedules[0].parameters == {"source": "schedule"}  # as prefect.yaml says

            def auto_scheduled():
                return client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[health_check.id])),
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["auto-scheduled"])),
                )

            upcoming = wait_for(
                auto_scheduled, 60, "the scheduler to create runs from the cron schedule", every=0.5
            )
            assert all(run.state.is_scheduled() for run in upcoming)
            assert all(run.parameters["source"] == "schedule" for run in upcoming)

            # as a user would in the UI: make it run every 3 s, then watch one scheduled run complete
            for schedule in health_check.schedules:
                client.delete_deployment_schedule(health_check.id, schedule.id)
            client.create_deployment_schedules(
                health_check.id,
                [DeploymentScheduleCreate(schedule=IntervalSchedule(interval=timedelta(seconds=3)))],
            )

            def completed():
                return [run for run in auto_scheduled() if run.state.is_completed()]

            done = wait_for(completed, 120, "pipeline serve to complete a scheduled run", every=0.5)
        assert done[0].name.startswith("health-check-")
        assert httpserver.log, "the scheduled run notified nobody"
        assert json.loads(httpserver.log[0][0].data)["title"].startswith("health-check on ")
    finally:
        os.killpg(serve.pid, signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
