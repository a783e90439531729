"""The `alertmanager` context source against a real Alertmanager (Debian's prometheus-alertmanager).

Without the binary these tests skip, except on CI (`CI=true`), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer
from support.ports import free_port

from nodes.base import NodeContext, RunInfo
from nodes.runtime import execute_node

DEFINITIONS = Path(__file__).parents[1] / "definitions"
CONFIG = "route:\n  receiver: none\nreceivers:\n  - name: none\n"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _alert(name: str, instance: str, severity: str) -> dict:
    return {
        "labels": {"alertname": name, "instance": instance, "severity": severity},
        "annotations": {"summary": f"{name} on {instance}"},
        "startsAt": _iso(datetime.now(UTC) - timedelta(minutes=5)),
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory) -> str:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        reason = "alertmanager is not installed (apt-get install prometheus-alertmanager; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("alertmanager")
    (home / "am.yml").write_text(CONFIG)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(home / "log.txt", "w") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'am.yml'}",
                f"--storage.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=home,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/-/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            pytest.fail(f"alertmanager did not become ready: {(home / 'log.txt').read_text()[-2000:]}")
        alerts = [
            _alert("QueueBacklog", "db-7:9100", "warning"),  # the alert under triage
            _alert("DiskFull", "db-7:9100", "critical"),
            _alert("HighLoad", "db-7:9100", "warning"),
            _alert("DiskFull", "db-8:9100", "critical"),  # another target
        ]
        httpx.post(f"{url}/api/v2/alerts", json=alerts).raise_for_status()
        now = datetime.now(UTC)
        silence = {
            "matchers": [
                {"name": "instance", "value": "db-7:.*", "isRegex": True, "isEqual": True},
                {"name": "alertname", "value": "QueueBacklog", "isRegex": False, "isEqual": True},
            ],
            "startsAt": _iso(now - timedelta(seconds=5)),
            "endsAt": _iso(now + timedelta(hours=1)),
            "createdBy": "alice",
            "comment": "db-7 maintenance",
        }
        httpx.post(f"{url}/api/v2/silences", json=silence).raise_for_status()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(httpx.get(f"{url}/api/v2/alerts").json()) < 4:
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_other_alerts_of_the_target_and_its_silences_reach_the_message(
    alertmanager, httpserver: HTTPServer, tmp_path, monkeypatch
):
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    monkeypatch.setenv("ALERTMANAGER_URL", alertmanager)
    alert = _alert("QueueBacklog", "db-7:9100", "warning")
    payload = {
        "receiver": "opsflow",
        "status": "firing",
        "alerts": [
            {
                **alert,
                "status": "firing",
                "endsAt": "0001-01-01T00:00:00Z",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
        "groupLabels": {"alertname": "QueueBacklog"},
        "commonLabels": alert["labels"],
        "externalURL": alertmanager,
        "version": "4",
        "groupKey": f'{{}}:{{alertname="QueueBacklog",run="{uuid.uuid4().hex}"}}',
    }
    shipped = {n["id"]: n for n in json.loads((DEFINITIONS / "alert-triage.json").read_text())["nodes"]}
    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="alert-triage"), payload=payload)
    ctx.incident = execute_node("ingest", "ingest", shipped["ingest"]["config"], ctx)["output"]["incident"]
    context = execute_node("context", "context", shipped["context"]["config"], ctx)["output"]
    record = context["alertmanager"]
    assert record["url"] == alertmanager and record["key"] == "instance=db-7:9100"
    assert sorted(o["alertname"] for o in record["others"]) == [
        "DiskFull",
        "HighLoad",
    ]  # not itself, not db-8
    assert [s["created_by"] for s in record["silences"]] == ["alice"]
    assert all(q["status"] == "ok" and q["duration_ms"] >= 0 for q in record["queries"])

    ctx.nodes["context"] = context
    ctx.nodes["analyze"] = execute_node("analyze", "intelligence", shipped["analyze"]["config"], ctx)[
        "output"
    ]
    httpserver.expect_request("/hook").respond_with_data("ok")
    execute_node("slack", "notify", {"driver": "slack", "webhook_url": httpserver.url_for("/hook")}, ctx)
    (sent,) = [json.loads(req.data) for req, _ in httpserver.log if req.path == "/hook"]
    facts = [e["text"] for a in sent["attachments"] for b in a.get("blocks", []) for e in b["elements"]]
    also = next(f for f in facts if f.startswith("*also firing:*"))
    assert "DiskFull (critical)" in also and "HighLoad (warning)" in also and "db-8" not in also
    assert any("alice: 'db-7 maintenance'" in f for f in facts if f.startswith("*silenced:*"))
    assert "Also firing for instance=db-7:9100" in json.dumps(sent["blocks"])
