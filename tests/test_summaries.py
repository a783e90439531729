"""Each node's one-line summary: in its task run's logs, the node table, `pipeline run`, `pipeline show`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from support.ports import free_port

import nodes
from nodes.runtime import node_result
from nodes.summaries import summarize

pytestmark = pytest.mark.timeout(240)


class CrashConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class crash:  # noqa: N801 - a node type module stand-in: a bug, not an expected failure
    Config = CrashConfig

    @staticmethod
    def run(config: CrashConfig, ctx) -> dict[str, Any]:
        raise RuntimeError("a bug in the handler")


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code = 500 if self.path.startswith("/down") else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def hook_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)


def _definition(url: str, *, crashes: bool = True) -> dict[str, Any]:
    node_list = [
        {
            "id": "mem",
            "type": "check",
            "config": {"checks": [{"metric": "payload.memory.percent", "warning": 85, "critical": 95}]},
            "next": "route",
        },
        {
            "id": "route",
            "type": "condition",
            "config": {"if": "nodes.mem.status == 'warning'", "then": "shape", "else": "quiet"},
            "next": ["shape", "quiet"],
        },
        {"id": "quiet", "type": "transform", "config": {"expression": "`1`"}},
        {
            "id": "shape",
            "type": "transform",
            "config": {"mapping": {"level": "nodes.mem.status"}},
            "next": ["analyze"],
        },
        {"id": "analyze", "type": "intelligence", "config": {"provider": "local"}, "next": ["hook", "down"]},
        {"id": "hook", "type": "notify", "config": {"driver": "webhook", "url": f"{url}/ok"}},
        {
            "id": "down",
            "type": "notify",
            "required": False,
            "retries": 1,
            "retry_delay_seconds": 0.1,
            "config": {"driver": "webhook", "url": f"{url}/down"},
        },
    ]
    if crashes:
        node_list[4]["next"] += ["gone", "bug"]
        node_list.append(
            {
                "id": "gone",
                "type": "notify",
                "required": False,
                "retries": 0,
                "config": {"driver": "webhook", "url": f"http://127.0.0.1:{free_port()}/x"},
            }
        )
        node_list.append({"id": "bug", "type": "crash", "required": False, "retries": 0})
    return {"name": "summary-test", "version": "1.0", "nodes": node_list}


PAYLOAD = {"memory": {"percent": 91}}


def test_each_type_says_what_it_did():
    ingest = {"incident_id": 57, "alerts_created": 2, "alerts_resolved": 1, "counts": {"received": 3}}
    assert summarize("ingest", ingest) == "ingested 3 alerts into incident 57 (2 new, 1 resolved)"
    analysis = {"provider": "local", "summary": "Disk 93% full on db-7", "probable_cause": "logs grow"}
    assert summarize("intelligence", analysis) == "analysis (local): Disk 93% full on db-7 — cause: logs grow"
    fallback = {**analysis, "fallback_used": True, "fallback_from": "openai"}
    assert summarize("intelligence", fallback).startswith("analysis (local (fallback from openai)): Disk")
    sent = {
        "deliveries": [{"driver": "slack", "status": "delivered", "channel": "#ops", "message_id": "17.1"}]
    }
    assert summarize("notify", sent) == "slack: delivered to #ops (id 17.1)"
    approval = {"decision": "rejected", "by": "bars-oncall", "comment": "not now"}
    assert summarize("approval", approval) == "approval: rejected by bars-oncall — 'not now'"
    elsewhere = {"collected": False, "skipped_reason": "the alert is about db-7, not this host"}
    assert summarize("context", elsewhere) == "context: not collected: the alert is about db-7, not this host"
    assert summarize("condition", {"branch": "then", "taken": ["a", "b"]}) == "branch then: a, b"
    skipped = node_result("n", "notify", skipped=True, skip_reason="branch not taken")
    assert skipped["summary"] == "skipped: branch not taken"
    failed = node_result("n", "notify", errors=[{"message": "node 'n': refused\nmore"}])
    assert failed["summary"] == "node 'n': refused"


def _logs_by_task(run_id: str, wanted: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    """The run's log records per task run name, polled (bounded) until `wanted` texts arrive."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    from flows.history import flush_client_queues

    flush_client_queues()
    found: dict[str, list[tuple[str, str]]] = {}
    with get_client(sync_client=True) as c:
        flow_runs = FlowRunFilter(id=FlowRunFilterId(any_=[uuid.UUID(run_id)]))
        for _ in range(120):  # task runs and logs reach the API as events: up to ~30 s here
            names = {str(t.id): t.name for t in c.read_task_runs(flow_run_filter=flow_runs)}
            logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)])))
            found = {}
            for log in logs:
                name = names.get(str(log.task_run_id), "flow")
                found.setdefault(name, []).append((log.level, log.message))
            if all(any(text in m for _, m in found.get(n, [])) for n, text in wanted.items()):
                break
            time.sleep(0.25)
    return found


def test_a_run_logs_and_tabulates_each_nodes_line(prefect_api, hook_url, monkeypatch):
    monkeypatch.setitem(nodes.NODE_TYPES, "crash", f"{__name__}:crash")
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from flows.pipeline import run_pipeline

    state = asyncio.run(run_pipeline(definition=_definition(hook_url), payload=PAYLOAD, return_state=True))
    result = state.result(raise_on_failure=False)
    assert result["status"] == "partial", result["error"]
    lines = {n: r["summary"] for n, r in result["node_results"].items()}
    assert lines["mem"] == "check: payload.memory.percent 91 ≥ warning 85"
    assert lines["route"] == "branch then: shape"
    assert lines["quiet"] == "skipped: branch not taken"
    assert lines["hook"].startswith("webhook: delivered to ")
    assert lines["analyze"].startswith("analysis (local): ")

    logs = _logs_by_task(
        result["run_id"],
        {
            "mem": lines["mem"],
            "hook": "webhook: delivered",
            "bug": "a bug in the handler",
            "gone": "Task run failed",
        },
    )
    assert (20, lines["mem"]) in logs["mem"]
    assert (20, lines["route"]) in logs["route"]
    assert (20, lines["analyze"]) in logs["analyze"]
    assert (20, lines["hook"]) in logs["hook"]
    # a 5xx is an expected failure: its record is one line; the crash keeps its traceback
    refused = [m for level, m in logs["down"] if level >= 40 and "Task run failed" in m]
    assert refused and all("\n" not in m and "Traceback" not in m for m in refused), logs["down"]
    assert "HTTP 500" in refused[-1] or "500" in refused[-1]
    gone = [m for level, m in logs["gone"] if level >= 40 and "Task run failed" in m]
    assert len(gone) == 1 and "\n" not in gone[0] and "Traceback" not in gone[0], logs["gone"]
    crashed = [m for level, m in logs["bug"] if level >= 40 and "Task run failed" in m]
    assert crashed and "Traceback" in crashed[-1] and "RuntimeError: a bug in the handler" in crashed[-1]

    with get_client(sync_client=True) as c:
        artifacts = c.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(result["run_id"])])
            )
        )
    markdown = next(a for a in artifacts if a.type == "markdown").data
    story = markdown.split("## What each node did\n\n")[1]
    assert f"- `mem`: {lines['mem']}\n" in story and f"- `analyze`: {lines['analyze']}" in story
    assert f"- `hook`: {lines['hook']}" in story and "- `quiet`" not in story
    table = next(a for a in artifacts if a.type == "table")
    rows = {r["node"]: r for r in (json.loads(table.data) if isinstance(table.data, str) else table.data)}
    assert list(rows["mem"]) == [
        *("node", "type", "status", "summary", "duration", "attempts", "tokens", "skip_reason", "error"),
    ]
    assert rows["mem"]["summary"] == lines["mem"] and rows["mem"]["error"] == ""
    assert rows["quiet"]["skip_reason"] == "branch not taken" and rows["quiet"]["error"] == ""
    assert rows["quiet"]["summary"] == ""
    for row in (rows["mem"], rows["hook"]):
        number, unit = row["duration"].split(" ")
        assert unit in ("ms", "s") and float(number) >= 0, row
    down = rows["down"]
    assert down["status"] == "failed" and down["attempts"] == 2 and "500" in down["error"]
    assert down["duration"].endswith(" in all)"), down  # the retried node's total time
    assert rows["bug"]["status"] == "failed" and "RuntimeError" in rows["bug"]["error"]


def _pipeline(*args: str, api: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PREFECT_API_URL": api}
    return subprocess.run(
        [sys.executable, "-m", "deployments.cli", *args], capture_output=True, text=True, env=env, timeout=180
    )


def test_pipeline_run_and_show_print_the_lines(prefect_api, hook_url, tmp_path):
    path = tmp_path / "summary-test.json"
    path.write_text(json.dumps(_definition(hook_url, crashes=False)))
    done = _pipeline("run", "--config", str(path), "--payload", json.dumps(PAYLOAD), api=prefect_api)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    # the seed lines stay as they were; the summary follows them
    assert "--- intelligence (analyze) ---\n  Summary: " in out
    block = out.split("--- intelligence (analyze) ---\n")[1].split("\n\n")[0].splitlines()
    assert block[1].startswith("  Provider: local") and block[2].startswith("  analysis (local): ")
    assert "--- check (mem) ---\n" in out and "  check: payload.memory.percent 91 ≥ warning 85\n" in out
    hook = out.split("--- notify (hook) ---\n")[1].split("\n\n")[0]
    assert hook.startswith("  Driver: webhook\n  Channels attempted: 1\n  Succeeded: 1\n  webhook: delivered")
    assert "--- transform (quiet) ---\n  (skipped) branch not taken" in out
    assert "Traceback" not in done.stderr, done.stderr[-3000:]

    run_id = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("Run ID: "))
    shown = _pipeline("show", run_id, api=prefect_api)
    assert shown.returncode == 0, shown.stderr[-3000:]
    # show prints each node as run did, from the results the run stored
    for node in ("intelligence (analyze)", "check (mem)", "notify (hook)"):
        ran = out.split(f"--- {node} ---\n")[1].split("  Duration: ")[0]
        assert f"--- {node} ---\n{ran}" in shown.stdout, node
    assert "  check: payload.memory.percent 91 ≥ warning 85\n" in shown.stdout
    assert "  Driver: webhook\n  Channels attempted: 1\n  Succeeded: 1\n  webhook: delivered" in shown.stdout
    assert "--- transform (quiet) ---\n  (skipped) branch not taken" in shown.stdout


def test_the_summary_artifact_headline_names_the_alerts_once_each():
    from flows.render import headline

    alerts = [{"title": "DiskFull"}, {"title": "QueueBacklog"}, {"title": "DiskFull"}, {}]
    result = {
        "node_results": {
            "ingest": {
                "node_type": "ingest",
                "skipped": False,
                "summary": "ingested 4 alerts into incident 7 (4 new, 0 resolved)",
                "output": {"incident": {"id": 7, "alerts": alerts}},
            },
            "tell": {"node_type": "notify", "skipped": True, "summary": "skipped: when was false"},
        }
    }
    assert headline(result) == [
        "- alerts: DiskFull, QueueBacklog",
        "",
        "## What each node did",
        "",
        "- `ingest`: ingested 4 alerts into incident 7 (4 new, 0 resolved)",
    ]
