"""Node results in Prefect result storage: redacted, read back by `pipeline show`, reused by a retried run.

Everything is checked through the session's real Prefect server and the files its
result storage wrote; a flow run is retried the way the UI's Retry button does it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.timeout(180)

SECRET = "sk-results-Zq8Xv2Lm9Tr4Wp6Yn3"


def definition(*nodes: dict, name: str = "results-test") -> dict:
    return {"name": name, "version": "1.0", "nodes": list(nodes)}


def storage() -> Path:
    return Path(os.environ["PREFECT_HOME"]) / "storage"


async def _records(run_id: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterTaskRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from flows.past_runs import task_runs_of

    async with get_client() as client:
        flow_run = await client.read_flow_run(uuid.UUID(run_id))
        task_runs = await task_runs_of(client, flow_run.id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                task_run_id=ArtifactFilterTaskRunId(any_=[t.id for t in task_runs])
            )
        )
        logs = await client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run.id]))
        )
        states = await client.read_flow_run_states(flow_run.id)
        stored = {t.name: await t.state.aresult(raise_on_failure=False) for t in task_runs if t.state.data}
    return {
        "flow_run": flow_run,
        "task_runs": task_runs,
        "artifacts": artifacts,
        "logs": [log.message for log in logs],
        "states": states,
        "stored": stored,
    }


def records(run_id: str, expected_task_runs: int) -> dict[str, Any]:
    """What Prefect keeps of a run, once its task runs and logs have all arrived."""
    from flows.history import flush_client_queues, wait_for_task_runs

    flush_client_queues()
    assert asyncio.run(wait_for_task_runs(run_id, expected_task_runs)) >= expected_task_runs
    return asyncio.run(_records(run_id))


def without_total(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k != "total_ms"}


@pytest.fixture(scope="module")
def secret_run(prefect_api):
    """One run whose first node resolves a secret and whose second reads that node's output."""
    from testnodes import TEST_NODE_TYPES

    import nodes

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OPSFLOW_TEST_RESULT_SECRET", SECRET)
        for name, path in TEST_NODE_TYPES.items():
            mp.setitem(nodes.NODE_TYPES, name, path)
        from flows.pipeline import run_pipeline

        raw = definition(
            {
                "id": "first",
                "type": "echo",
                "config": {"url": "https://x/${OPSFLOW_TEST_RESULT_SECRET}", "note": "kept-in-storage"},
                "next": "second",
            },
            {"id": "second", "type": "transform", "config": {"mapping": {"seen": "nodes.first.url"}}},
        )
        state = asyncio.run(run_pipeline(definition=raw, return_state=True))
        result = state.result()
    return result, records(result["run_id"], 2)


def test_each_node_result_is_stored_redacted_and_reads_back(secret_run):
    result, kept = secret_run
    # the task returned its result redacted, so the next node saw it redacted too
    assert result["node_results"]["second"]["output"] == {"seen": "https://x/***"}
    assert kept["stored"] == {name: without_total(node) for name, node in result["node_results"].items()}
    for task_run in kept["task_runs"]:
        key = task_run.state.data.storage_key
        assert key.startswith(str(storage() / "opsflow" / result["run_id"] / f"{task_run.name}-"))
    files = [p for p in storage().rglob("*") if p.is_file()]
    run_files = [p for p in files if result["run_id"] in str(p)]
    assert len(run_files) == 2 and all(p.suffix == ".json" for p in run_files)
    assert any("kept-in-storage" in p.read_text() for p in run_files)  # the scan below can see content
    assert not [p for p in files if SECRET in p.read_text(errors="replace")]


def test_the_ui_shows_each_node_result_on_its_task_run_page(secret_run):
    result, kept = secret_run
    by_task = {a.task_run_id: a for a in kept["artifacts"] if a.type == "result"}
    for task_run in kept["task_runs"]:
        shown = by_task[task_run.id]  # the task run page's "Result" is this artifact's description
        node = result["node_results"][task_run.name]
        assert shown.description.startswith(node["summary"] + "\n\n```json\n")
        assert shown.data["stored at"] == task_run.state.data.storage_key
        assert SECRET not in shown.model_dump_json()
    assert "kept-in-storage" in by_task[kept["task_runs"][0].id].description


def test_task_inputs_name_the_node_and_its_upstream_only(secret_run):
    _, kept = secret_run
    first, second = kept["task_runs"]
    assert first.task_inputs == {"node": []}
    assert list(second.task_inputs) == ["node", "wait_for"]
    assert [i.id for i in second.task_inputs["wait_for"]] == [first.id]


def test_show_prints_the_stored_outputs_and_json_the_run_result(secret_run):
    from flows.past_runs import show_from_cli

    result, _ = secret_run
    text = show_from_cli(result["run_id"])
    assert "--- echo (first) ---\n  url: https://x/***\n  note: kept-in-storage\n  echo: url, note\n" in text
    assert "--- transform (second) ---\n  seen: https://x/***\n" in text
    shown = json.loads(show_from_cli(result["run_id"], as_json=True))
    for key in ("trace_id", "run_id", "definition", "definition_version", "definition_source", "status"):
        assert shown[key] == result[key], key
    assert shown["node_results"] == {n: without_total(r) for n, r in result["node_results"].items()}
    assert SECRET not in text and SECRET not in json.dumps(shown)


def test_show_falls_back_on_the_artifacts_when_the_stored_results_are_gone(run):
    from flows.past_runs import show_from_cli

    _, result = run(
        definition({"id": "only", "type": "echo", "config": {"word": "gone"}}, name="results-gone")
    )
    records(result["run_id"], 1)
    shutil.rmtree(storage() / "opsflow" / result["run_id"])
    shown = json.loads(show_from_cli(result["run_id"], as_json=True))
    assert shown["node_results"]["only"]["output"] is None
    assert shown["node_results"]["only"]["summary"] == "echo: word"  # from the node table
    assert "--- echo (only) ---\n  echo: word\n" in show_from_cli(result["run_id"])


def test_retry_delays_read_as_seconds(run):
    key = uuid.uuid4().hex
    flaky = {"key": key, "fail_times": 2}
    node = {"id": "flaky", "type": "flaky", "config": flaky, "retries": 2, "retry_delay_seconds": 0.3}
    _, result = run(definition(node, name="results-retry"))
    assert result["status"] == "completed" and result["node_results"]["flaky"]["attempts"] == 3
    kept = records(result["run_id"], 1)
    (task_run,) = kept["task_runs"]
    assert task_run.empirical_policy.retry_delay == 0.3  # the UI's "Retry Delay": a number, not a list
    delays = [m for line in kept["logs"] for m in re.findall(r"Retry \d/2 will start (\S+) second", line)]
    assert len(delays) == 2 and all(re.fullmatch(r"\d+(\.\d{1,2})?", d) for d in delays), delays


def test_every_flow_parameter_has_a_description_in_the_deployment(prefect_api):
    import inspect

    from prefect.client.orchestration import get_client

    from flows.pipeline import run_pipeline
    from flows.request import RunRequest

    async def deploy_and_read():
        deployment = await run_pipeline.to_deployment(name=f"described-{uuid.uuid4().hex[:8]}")
        async with get_client() as client:
            return await client.read_deployment(await deployment.apply())

    schema = asyncio.run(deploy_and_read()).parameter_openapi_schema
    names = list(inspect.signature(run_pipeline.fn).parameters)
    assert names == [f.name for f in dataclasses.fields(RunRequest)]  # one set of parameters
    assert sorted(schema["properties"]) == sorted(names)
    for name in names:
        assert len(schema["properties"][name].get("description") or "") > 10, name
    assert "block:NAME" in schema["properties"]["definition"]["description"]


def _answer_when_paused(run_id: str, **answer) -> threading.Thread:
    from prefect.client.orchestration import get_client

    from flows.approval import answer_approval

    def go() -> None:
        deadline = time.monotonic() + 60
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                state = client.read_flow_run(uuid.UUID(run_id)).state
                if state is not None and state.is_paused():
                    answer_approval(run_id, **answer)
                    return
                time.sleep(0.2)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


def test_a_flow_run_retried_like_the_ui_runs_only_what_did_not_complete(flow):
    """Completed nodes come back `Cached` from storage, the approval is not asked again."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.flow_engine import run_flow_async
    from prefect.states import State
    from testnodes import CALLS

    key = uuid.uuid4().hex
    raw = definition(
        {"id": "count", "type": "flaky", "config": {"key": f"{key}-count", "fail_times": 0}, "next": "ask"},
        {
            "id": "ask",
            "type": "approval",
            "config": {"poll_seconds": 1, "timeout_seconds": 20},
            "next": "once",
        },
        {
            "id": "once",
            "type": "flaky",
            "config": {"key": f"{key}-once", "fail_times": 1, "retryable": False},
        },
        name=f"results-resume-{key[:6]}",
    )

    async def deploy_and_create():
        deployment = await flow.to_deployment(name=raw["name"])
        async with get_client() as client:
            deployment_id = await deployment.apply()
            return await client.create_flow_run_from_deployment(deployment_id, parameters={"definition": raw})

    flow_run = asyncio.run(deploy_and_create())
    answering = _answer_when_paused(str(flow_run.id), approve=True, comment="go", by="alice")
    first = asyncio.run(
        run_flow_async(flow, flow_run=flow_run, parameters={"definition": raw}, return_type="state")
    )
    answering.join(timeout=10)
    assert first.is_failed() and CALLS[f"{key}-count"] == 1

    async def retry_like_the_ui():  # the UI's Retry: Scheduled/AwaitingRetry, not forced
        async with get_client() as client:
            retry = State(type=StateType.SCHEDULED, name="AwaitingRetry", message="Retry from the UI")
            response = await client.set_flow_run_state(flow_run.id, retry)
            assert response.status == SetStateStatus.ACCEPT, response.details
            return await client.read_flow_run(flow_run.id)

    again = asyncio.run(retry_like_the_ui())
    second = asyncio.run(
        run_flow_async(flow, flow_run=again, parameters=again.parameters, return_type="state")
    )
    result = second.result()
    assert second.is_completed() and result["status"] == "completed"
    assert CALLS[f"{key}-count"] == 1 and CALLS[f"{key}-once"] == 2  # count ran once, in the first attempt
    assert result["node_results"]["count"]["output"]["calls"] == 1
    assert result["node_results"]["ask"]["output"]["by"] == "alice"  # the recorded decision, not a new ask
    kept = records(result["run_id"], 6)
    assert kept["flow_run"].run_count == 3  # Running: the first attempt, after the answer, the retry
    runs = {}
    for task_run in kept["task_runs"]:
        runs.setdefault(task_run.name, []).append(task_run.state.name)
    assert runs == {
        "count": ["Completed", "Cached"],
        "ask": ["Completed", "Cached"],
        "once": ["Failed", "Completed"],
    }
    assert sum(1 for s in kept["states"] if s.type == StateType.PAUSED) == 1


def test_a_result_storage_block_set_as_the_default_keeps_the_results(prefect_api, tmp_path):
    """The README's "or a result storage block you configure": Prefect's default storage block."""
    from prefect.filesystems import LocalFileSystem
    from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, temporary_settings

    from flows.past_runs import show_from_cli
    from flows.pipeline import run_pipeline

    name = f"opsflow-results-{uuid.uuid4().hex[:8]}"
    block_id = asyncio.run(LocalFileSystem(basepath=str(tmp_path / "block-storage")).asave(name))
    raw = definition({"id": "shape", "type": "transform", "config": {"mapping": {"kept": "'in-the-block'"}}})
    with temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: f"local-file-system/{name}"}):
        result = asyncio.run(run_pipeline(definition=raw, return_state=True)).result()
        kept = records(result["run_id"], 1)
    (task_run,) = kept["task_runs"]
    assert task_run.state.data.storage_block_id == block_id
    assert (tmp_path / "block-storage" / task_run.state.data.storage_key).is_file()
    assert kept["stored"]["shape"]["output"] == {"kept": "in-the-block"}
    assert not list(storage().glob(f"opsflow/{result['run_id']}/*"))  # not the default folder
    assert "kept: in-the-block" in show_from_cli(result["run_id"])
