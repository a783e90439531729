"""A channel a run already reached is never sent to again, whichever process retries the run.

The run is made twice by the real `pipeline` command in two separate processes with the
same trace id, as a flow run retried from the Prefect UI on another worker is: the first
reaches one channel of a fan-out and fails on the other; the second must send only to
the one still owed. The memory lives in the incident store's database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

pytestmark = pytest.mark.timeout(240)

PIPELINE = Path(sys.executable).parent / "pipeline"


def fan_out(sink: HTTPServer) -> dict:
    return {
        "name": "fan-out-memory",
        "version": "1.0",
        "nodes": [
            {
                "id": "tell",
                "type": "notify",
                "retries": 0,
                "config": {
                    "title": "Disk full on db-01",
                    "channels": [
                        {"driver": "slack", "webhook_url": sink.url_for("/services/T0/B0/reached")},
                        {"driver": "webhook", "url": sink.url_for("/hooks/flaky")},
                    ],
                },
            }
        ],
    }


def test_a_rerun_of_the_same_run_in_another_process_does_not_resend(
    prefect_api, httpserver: HTTPServer, tmp_path
):
    answers = iter([500])  # the flaky channel refuses once, then takes it

    def flaky(request: Request) -> Response:
        return Response("busy", status=next(answers, 200))

    httpserver.expect_request("/services/T0/B0/reached").respond_with_data("ok")
    httpserver.expect_request("/hooks/flaky").respond_with_handler(flaky)
    path = tmp_path / "fan-out-memory.json"
    path.write_text(json.dumps(fan_out(httpserver)))
    trace = uuid.uuid4().hex
    env = {**os.environ, "PREFECT_API_URL": prefect_api}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(PIPELINE), "run", "--config", str(path), "--trace-id", trace, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    first = run()
    assert first.returncode == 1, first.stderr[-2000:]
    second = run()
    assert second.returncode == 0, second.stderr[-2000:]
    paths = [request.path for request, _ in httpserver.log]
    assert paths.count("/services/T0/B0/reached") == 1, paths
    assert paths.count("/hooks/flaky") == 2, paths
    deliveries = json.loads(second.stdout)["node_results"]["tell"]["output"]["deliveries"]
    assert deliveries[0]["earlier_attempt"] is True and "earlier_attempt" not in deliveries[1]
