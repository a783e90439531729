"""`pipeline show` and `pipeline logs`: past runs read back from the session's real Prefect server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict
from testnodes import TEST_NODE_TYPES

import nodes
from nodes.errors import OpsflowError

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
GATE = threading.Event()


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")


class gate:  # noqa: N801 - a node type module stand-in: blocks until the test opens it
    Config = GateConfig

    @staticmethod
    def run(config: GateConfig, ctx) -> dict[str, Any]:
        ctx.log.info("waiting at the gate")
        if not GATE.wait(timeout=120):
            raise RuntimeError("the test never opened the gate")
        ctx.log.info("gate opened")
        return {"opened": True}


@pytest.fixture
def run(prefect_api, monkeypatch):
    """Run a definition dict through the flow; its logs and task runs are recorded on return."""
    for name, path in {**TEST_NODE_TYPES, "gate": f"{__name__}:gate"}.items():
        monkeypatch.setitem(nodes.NODE_TYPES, name, path)
    from flows.history import flush_client_queues, wait_for_task_runs
    from flows.pipeline import run_pipeline

    def go(definition: dict, **params) -> dict:
        state = asyncio.run(run_pipeline(definition=definition, return_state=True, **params))
        result = state.result(raise_on_failure=False)
        flush_client_queues()
        expected = len(result["executed_nodes"])
        assert asyncio.run(wait_for_task_runs(result["run_id"], expected)) == expected
        return result

    return go


def definition(*node_list, name="inspect-test", **top):
    return {"name": name, "version": "1.0", "nodes": list(node_list), **top}


FAILING = definition(
    {"id": "first", "type": "echo", "config": {"host": "db-01"}},
    {"id": "second", "type": "fail", "config": {"message": "disk on fire"}},
    {"id": "third", "type": "echo"},
)


@pytest.fixture(scope="module")
def failed_run(prefect_api):
    """One failed run shared by the read-only tests below."""
    with pytest.MonkeyPatch.context() as mp:
        for name, path in TEST_NODE_TYPES.items():
            mp.setitem(nodes.NODE_TYPES, name, path)
        from flows.history import flush_client_queues, wait_for_task_runs
        from flows.pipeline import run_pipeline

        state = asyncio.run(run_pipeline(definition=FAILING, return_state=True))
        result = state.result(raise_on_failure=False)
        flush_client_queues()
        assert asyncio.run(wait_for_task_runs(result["run_id"], 2)) == 2
    return result


def test_show_rebuilds_a_failed_run_from_the_api(failed_run):
    from flows.past_runs import show_run

    text = asyncio.run(show_run(failed_run["run_id"]))
    assert text.startswith("=" * 60 + "\nPIPELINE RESULT\n")
    assert f"Run ID: {failed_run['run_id']}" in text
    assert f"Trace ID: {failed_run['trace_id']}" in text
    assert "Definition: inspect-test" in text and f"Version: {failed_run['definition_version']}" in text
    assert f"Flow run: inspect-test-{failed_run['trace_id'][:8]} (Failed)" in text
    assert "Status: failed" in text
    # the stored result: the output's lines, as `pipeline run` prints them, then the summary
    assert "--- echo (first) ---\n  host: db-01\n  echo: host\n  task run: first [echo] Completed in " in text
    assert (
        "--- fail (second) ---\n  Errors: node 'second': failed: disk on fire\n"
        "  task run: second [fail] Failed in "
    ) in text
    assert "--- echo (third) ---\n  (skipped) run failed at node 'second'" in text
    assert "Result artifact (opsflow-inspect-test):" in text
    table = text.split("Result artifact (opsflow-inspect-test):\n")[1].split("\n\n")[0].splitlines()
    assert table[0].split() == [
        "node",
        "type",
        "status",
        "summary",
        "duration",
        "attempts",
        "tokens",
        "skip_reason",
        "error",
    ]
    assert [row.split()[:3] for row in table[1:]] == [
        ["first", "echo", "completed"],
        ["second", "fail", "failed"],
        ["third", "echo", "skipped"],
    ]
    assert text.endswith("✗ Pipeline failed: node 'second': failed: disk on fire")


def test_read_run_matches_the_run_result(failed_run):
    from flows.past_runs import read_run

    rebuilt = asyncio.run(read_run(failed_run["run_id"]))
    for key in ("trace_id", "run_id", "definition", "definition_version", "status", "error"):
        assert rebuilt[key] == failed_run[key], key
    assert rebuilt["executed_nodes"] == failed_run["executed_nodes"]
    assert rebuilt["skipped_nodes"] == failed_run["skipped_nodes"]
    assert rebuilt["duration_ms"] == round(failed_run["duration_ms"], 1)
    for node_id, node in failed_run["node_results"].items():
        again = rebuilt["node_results"][node_id]
        assert again["errors"] == [{"message": e["message"]} for e in node["errors"]]
        assert again["skip_reason"] == node["skip_reason"]
        assert again["node_type"] == node["node_type"]
    tasks = rebuilt["task_runs"]
    assert sorted(tasks) == ["first", "second"]
    assert tasks["second"]["state"] == "Failed"
    assert tasks["second"]["error"] == "node 'second': failed: disk on fire"
    assert tasks["first"]["error"] is None and tasks["first"]["duration_ms"] > 0
    assert rebuilt["flow_run"]["state"] == "Failed"


def test_show_from_cli_as_json(failed_run):
    from flows.past_runs import show_from_cli

    data = json.loads(show_from_cli(failed_run["run_id"], as_json=True))
    assert data["status"] == "failed" and data["artifact"]["key"] == "opsflow-inspect-test"
    assert [row["node"] for row in data["artifact"]["rows"]] == ["first", "second", "third"]


def test_show_partial_run_with_retries(run):
    result = run(
        definition(
            {"id": "flaky", "type": "flaky", "config": {"key": uuid.uuid4().hex}, "retries": 3},
            {"id": "extra", "type": "fail", "required": False},
            defaults={"retry_delay_seconds": 0},
            name="inspect-partial",
        )
    )
    assert result["status"] == "partial"
    from flows.past_runs import read_run, show_run

    text = asyncio.run(show_run(result["run_id"]))
    assert "Status: partial" in text
    assert "task run: flaky [flaky] Completed" in text
    assert "ms (3 attempts)" in text
    assert "Errors: node 'extra': failed: boom" in text
    assert text.endswith("⚠ Pipeline completed with errors (status: partial)")
    assert asyncio.run(read_run(result["run_id"]))["task_runs"]["flaky"]["runs"] == 3


@pytest.mark.parametrize("bad", ["not-a-uuid", "", str(uuid.UUID(int=7))])
def test_unknown_or_malformed_id_is_a_clean_error(prefect_api, bad):
    from flows.past_runs import print_logs, show_run

    with pytest.raises(OpsflowError, match=rf"^Flow run not found: {re.escape(bad)}$"):
        asyncio.run(show_run(bad))
    with pytest.raises(OpsflowError, match=rf"^Flow run not found: {re.escape(bad)}$"):
        asyncio.run(print_logs(bad, False, io.StringIO()))


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}Z) (\w+) +\[([^\]]+)\] (.*)$")


def _parsed(text: str) -> list[tuple[str, str, str, str]]:
    return [m.groups() for line in text.splitlines() if (m := LINE.match(line))]


def test_logs_print_every_line_oldest_first(failed_run):
    from flows.past_runs import print_logs

    out = io.StringIO()
    count = asyncio.run(print_logs(failed_run["run_id"], False, out))
    lines = _parsed(out.getvalue())
    assert len(lines) == count
    assert [stamp for stamp, *_ in lines] == sorted(stamp for stamp, *_ in lines)
    triples = [(level, who, message) for _, level, who, message in lines]
    assert ("INFO", "first", "echo {'host': 'db-01'}") in triples
    assert ("INFO", "second", "about to fail with disk on fire") in triples
    assert triples[0][1] == "flow" and triples[0][2].startswith("Beginning flow run")
    assert any(level == "ERROR" and who == "flow" and "Failed" in msg for level, who, msg in triples)
    # a NodeError is an expected failure: one line, no traceback (a crash keeps it: test_summaries)
    assert "Traceback" not in out.getvalue() and "\n    File " not in out.getvalue()


def test_follow_on_a_finished_run_ends_at_once_with_the_same_lines(failed_run):
    from flows.past_runs import print_logs

    once, followed = io.StringIO(), io.StringIO()
    asyncio.run(print_logs(failed_run["run_id"], False, once))
    asyncio.run(asyncio.wait_for(print_logs(failed_run["run_id"], True, followed), 60))
    assert followed.getvalue() == once.getvalue() != ""


def test_follow_prints_new_lines_until_the_run_is_final(prefect_api, monkeypatch):
    for name, path in {**TEST_NODE_TYPES, "gate": f"{__name__}:gate"}.items():
        monkeypatch.setitem(nodes.NODE_TYPES, name, path)
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from flows.history import flush_client_queues
    from flows.past_runs import print_logs
    from flows.pipeline import run_pipeline

    GATE.clear()
    trace = uuid.uuid4().hex
    done = threading.Event()

    def in_background() -> None:
        try:
            asyncio.run(
                run_pipeline(
                    definition=definition(
                        {"id": "wait", "type": "gate"}, {"id": "after", "type": "echo", "config": {"n": 1}}
                    ),
                    trace_id=trace,
                )
            )
        finally:
            flush_client_queues()
            done.set()

    worker = threading.Thread(target=in_background, daemon=True)
    worker.start()

    async def follow() -> str:
        name = f"inspect-test-{trace[:8]}"
        async with get_client() as client:
            while True:
                found = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name]))
                )
                if found:
                    break
                await asyncio.sleep(0.1)
        out = io.StringIO()
        following = asyncio.create_task(print_logs(str(found[0].id), True, out))
        while "waiting at the gate" not in out.getvalue():  # following a run that is not final
            assert not following.done()
            await asyncio.sleep(0.1)
        GATE.set()
        await asyncio.wait_for(following, 90)
        return out.getvalue()

    try:
        text = asyncio.run(follow())
    finally:
        GATE.set()
        done.wait(60)
    lines = [(who, message) for _, _, who, message in _parsed(text)]
    assert ("wait", "gate opened") in lines
    assert ("after", "echo {'n': 1}") in lines
    assert any(who == "flow" and message.startswith("Finished in state Completed") for who, message in lines)


def _scheduled_run(message: str | None = None):
    """A flow run that never starts (no worker), with one log line when `message` is given."""
    from datetime import UTC, datetime

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import LogCreate

    from flows.pipeline import run_pipeline

    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(
            run_pipeline, parameters={"definition": "health-check", "trace_id": "abc123"}
        )
        if message is None:
            return flow_run
        client.create_logs(
            [
                LogCreate(
                    name="test",
                    level=20,
                    message=message,
                    timestamp=datetime.now(UTC),
                    flow_run_id=flow_run.id,
                )
            ]
        )
    return flow_run


def test_show_a_run_that_left_no_artifacts(prefect_api):
    from flows.past_runs import read_run, show_run

    flow_run = _scheduled_run()
    rebuilt = asyncio.run(read_run(str(flow_run.id)))
    assert rebuilt["definition"] == "health-check" and rebuilt["trace_id"] == "abc123"
    assert rebuilt["status"] == "pending" and rebuilt["executed_nodes"] == []
    text = asyncio.run(show_run(str(flow_run.id)))
    assert f"Flow run: {flow_run.name} (Pending)" in text
    assert "Result artifact" not in text
    assert text.endswith("Flow run state: Pending")


def test_ctrl_c_stops_following_cleanly(prefect_api):
    """A run that never ends (pending, no worker): Ctrl-C is how `logs --follow` stops."""
    flow_run = _scheduled_run("hello from a scheduled run")
    env = {**os.environ, "PREFECT_API_URL": prefect_api, "PYTHONUNBUFFERED": "1"}
    script = f"from flows.past_runs import logs_from_cli; logs_from_cli({str(flow_run.id)!r}, True)"
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = process.stdout.readline()
        assert first.endswith("INFO     [flow] hello from a scheduled run\n"), first
        process.send_signal(signal.SIGINT)
        rest, errors = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, errors
    assert "Traceback" not in errors and rest == ""


def test_an_unreachable_api_is_a_clean_error(tmp_path):
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path),
        "PREFECT_API_URL": "http://opsflow:hunter2-pw@127.0.0.1:1/api",
    }
    script = (
        "from flows.past_runs import show_from_cli\n"
        "from nodes.errors import OpsflowError\n"
        "try:\n"
        f"    show_from_cli({str(uuid.uuid4())!r})\n"
        "except OpsflowError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Cannot reach the Prefect API at http://127.0.0.1:1/api: ")
    assert "hunter2" not in done.stdout + done.stderr
