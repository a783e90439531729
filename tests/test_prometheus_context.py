"""The `prometheus` context source against a real Prometheus fed known series (recording rules).

Prometheus is Debian's `prometheus` package (`.ci/run` installs it); without the binary these
tests skip, except on CI (`CI=true`), where they fail.
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
from urllib.parse import quote

import httpx
import pytest
from pytest_httpserver import HTTPServer
from support.ports import free_port

from nodes.base import NodeContext, RunInfo
from nodes.runtime import execute_node

RULES = """
groups:
  - name: opsflow-test
    interval: 1s
    rules:
      - record: opsflow_test_queue_depth
        expr: label_replace(vector(42), "instance", "db-7:9100", "", "")
      # node_exporter's names, for the standard signals of db-7
      - record: node_load1
        expr: label_replace(vector(3.5), "instance", "db-7:9100", "", "")
      - record: node_memory_MemAvailable_bytes
        expr: label_replace(vector(2e9), "instance", "db-7:9100", "", "")
      - record: node_memory_MemTotal_bytes
        expr: label_replace(vector(8e9), "instance", "db-7:9100", "", "")
"""
DEFINITIONS = Path(__file__).parents[1] / "definitions"


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        reason = "the prometheus binary is not installed (apt-get install prometheus; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    home = tmp_path_factory.mktemp("prometheus")
    (home / "rules.yml").write_text(RULES)
    (home / "prometheus.yml").write_text("global:\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with open(home / "log.txt", "w") as log:  # the child has its own copy of the descriptor
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={home / 'prometheus.yml'}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=home,
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # ready, and the rule has written a few samples
            try:
                answer = httpx.get(
                    f"{url}/api/v1/query", params={"query": "count_over_time(opsflow_test_queue_depth[1m])"}
                )
                result = answer.json()["data"]["result"]
                if result and float(result[0]["value"][1]) >= 3:
                    break
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.25)
        else:
            pytest.fail(f"prometheus did not become ready: {(home / 'log.txt').read_text()[-2000:]}")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def alert_payload(expr: str, source_host: str = "prometheus.example:9090") -> dict:
    starts = (datetime.now(UTC) - timedelta(seconds=2)).isoformat().replace("+00:00", "Z")
    return {
        "receiver": "opsflow",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": {"alertname": "QueueBacklog", "instance": "db-7:9100", "severity": "warning"},
                "annotations": {
                    "summary": "Queue is backing up",
                    "runbook_url": "https://runbooks.example/queue",
                },
                "startsAt": starts,
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": f"http://{source_host}/graph?g0.expr={quote(expr)}&g0.tab=1",
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
        "groupLabels": {"alertname": "QueueBacklog"},
        "commonLabels": {"alertname": "QueueBacklog", "instance": "db-7:9100", "severity": "warning"},
        "externalURL": "http://alertmanager.example:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="QueueBacklog",run="{uuid.uuid4().hex}"}}',
    }


def triage(body: dict, slack: HTTPServer, tmp_path, monkeypatch, prometheus_url: str) -> tuple[dict, dict]:
    """The shipped alert-triage's context and analysis configs, with PROMETHEUS_URL set."""
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    monkeypatch.setenv("PROMETHEUS_URL", prometheus_url)
    shipped = {n["id"]: n for n in json.loads((DEFINITIONS / "alert-triage.json").read_text())["nodes"]}
    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="alert-triage"), payload=body)
    ctx.nodes["ingest"] = execute_node("ingest", "ingest", shipped["ingest"]["config"], ctx)["output"]
    ctx.incident = ctx.nodes["ingest"]["incident"]
    context = execute_node("context", "context", shipped["context"]["config"], ctx)["output"]
    ctx.nodes["context"] = context
    ctx.nodes["analyze"] = execute_node("analyze", "intelligence", shipped["analyze"]["config"], ctx)[
        "output"
    ]
    slack.expect_request("/hook").respond_with_data("ok")
    execute_node("slack", "notify", {"driver": "slack", "webhook_url": slack.url_for("/hook")}, ctx)
    (sent,) = [json.loads(req.data) for req, _ in slack.log if req.path == "/hook"]
    return context, sent


def visible(body: dict) -> str:
    parts = [b["text"]["text"] for b in body["blocks"] if "text" in b]
    parts += [e["text"] for a in body["attachments"] for b in a.get("blocks", []) for e in b["elements"]]
    return "\n".join(parts)


def test_the_alerts_expression_is_queried_and_its_numbers_reach_the_message(
    prometheus, httpserver, tmp_path, monkeypatch
):
    context, sent = triage(
        alert_payload("opsflow_test_queue_depth > 10"), httpserver, tmp_path, monkeypatch, prometheus
    )
    record = context["prometheus"]
    assert record["url"] == prometheus  # the configured server, never the alert's generatorURL host
    (query,) = record["queries"]
    assert query["status"] == "ok" and query["expr"] == "opsflow_test_queue_depth > 10"
    assert query["duration_ms"] >= 0 and query["step_seconds"] >= 15 and query["start"] < query["end"]
    (series,) = query["series"]
    assert series["labels"]["instance"] == "db-7:9100"
    assert (series["now"], series["at_firing"], series["min"], series["max"], series["trend"]) == (
        42,
        42,
        42,
        42,
        "flat",
    )
    text = visible(sent)
    assert "*value:* now 42 (at firing 42, min 42, max 42, flat)" in text
    assert "Prometheus: now 42 (at firing 42, min 42, max 42, flat)" in text
    assert ":warning: *WARNING*" in text and "target *db-7:9100*" in text
    assert "cpu" not in context  # psutil is not the target's state
    signals = {s["name"]: s for s in record["signals"]}
    assert set(signals) == {"memory used", "load1"}  # no up or cpu series for db-7: left out
    assert signals["memory used"]["series"][0]["now"] == 0.75 and signals["load1"]["series"][0]["now"] == 3.5
    assert "*target now:* memory used 75%, load1 3.5" in text


def test_the_prompt_carries_the_targets_numbers(prometheus, httpserver, tmp_path, monkeypatch):
    from nodes.intelligence.prompt import build_prompt

    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'incidents.db'}")
    monkeypatch.setenv("PROMETHEUS_URL", prometheus)
    ctx = NodeContext(
        run=RunInfo(trace_id=uuid.uuid4().hex), payload=alert_payload("opsflow_test_queue_depth")
    )
    ctx.incident = execute_node("ingest", "ingest", {"driver": "auto"}, ctx)["output"]["incident"]
    ctx.nodes["context"] = execute_node("context", "context", {}, ctx)["output"]
    user = build_prompt(ctx).user
    assert "## Alert target metrics from Prometheus (the alert's own expression)" in user
    assert "- `opsflow_test_queue_depth` (QueueBacklog): now 42 (at firing 42, min 42, max 42, flat)" in user


def test_a_bad_expression_is_recorded_and_said_plainly(prometheus, httpserver, tmp_path, monkeypatch):
    context, sent = triage(alert_payload("sum(("), httpserver, tmp_path, monkeypatch, prometheus)
    (query,) = context["prometheus"]["queries"]
    assert query["status"] == "error" and "bad_data" in query["error"]
    assert "Probable cause:* Work is piling up in a queue on db-7:9100" in visible(sent)
    assert "Prometheus: the query failed (HTTP 400: bad_data" in visible(sent)


def test_an_expression_with_no_series_now_says_so(prometheus, httpserver, tmp_path, monkeypatch):
    _, sent = triage(
        alert_payload("opsflow_test_queue_depth > 100"), httpserver, tmp_path, monkeypatch, prometheus
    )
    assert "the expression returns no series now" in visible(sent)


def test_oversized_and_slow_answers_are_cut_off_and_recorded(httpserver: HTTPServer):
    """Limits, against a local server playing a misbehaving Prometheus."""
    from werkzeug import Response

    from nodes.prometheus import MAX_BYTES, query_alerts

    incident = {
        "alerts": [
            {
                "status": "firing",
                "title": "Big",
                "fingerprint": "f",
                "labels": {},
                "generator_url": "http://elsewhere:9090/graph?g0.expr=big",
            }
        ]
    }
    httpserver.expect_request("/big/api/v1/query_range").respond_with_data("x" * (MAX_BYTES + 10))
    (query,) = query_alerts(incident, httpserver.url_for("/big"))["queries"]
    assert query["status"] == "error" and query["error"] == f"answer over {MAX_BYTES} bytes; not read"

    def slow(request):
        time.sleep(1.5)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/slow/api/v1/query_range").respond_with_handler(slow)
    (query,) = query_alerts(incident, httpserver.url_for("/slow"), timeout=0.3)["queries"]
    assert query["status"] == "error" and query["error"].startswith("timed out")
    assert query["expr"] == "big" and "duration_ms" in query
    deadline = time.monotonic() + 10  # let the slow handler finish, so it logs into no later test
    while len(httpserver.log) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(req.path.startswith(("/big/", "/slow/")) for req, _ in httpserver.log)  # never elsewhere:9090
