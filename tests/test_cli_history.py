"""History and names: tags, `runs -d` by tag, run names of --config runs, run refs, `doctor`."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.timeout(240)


def one_node(path, **top) -> str:
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "nodes": [{"id": "t", "type": "transform", "config": {"expression": "`1`"}}],
                **top,
            }
        )
    )
    return str(path)


def read_run(run_id: str):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return client.read_flow_run(uuid.UUID(run_id))


def test_config_runs_are_named_tagged_and_listed_by_definition(cli_run, prefect_api, tmp_path):
    name = f"hist-{uuid.uuid4().hex[:8]}"
    named = one_node(tmp_path / "some-file.json", name=name)
    code, out, err = cli_run("run", "--config", named, "--json", "--source", "cron")
    assert code == 0, err
    first = json.loads(out)
    run = read_run(first["run_id"])
    assert run.name == f"{name}-{first['trace_id'][:8]}"
    assert set(run.tags) >= {"opsflow", name, "cron"}
    code, out, err = cli_run("run", "--config", named, "--json", "--trace-id", "Custom_Trace.42")
    assert code == 0, err
    second = json.loads(out)
    assert read_run(second["run_id"]).name == f"{name}-Custom_T"
    code, out, err = cli_run("runs", "-d", name)
    assert code == 0, err
    assert first["run_id"] in out and second["run_id"] in out
    stem = f"stem-{uuid.uuid4().hex[:8]}"
    code, out, err = cli_run("run", "--config", one_node(tmp_path / f"{stem}.json"), "--json")
    assert code == 0, err
    assert read_run(json.loads(out)["run_id"]).name.startswith(f"{stem}-")


def test_show_and_approve_accept_a_name_or_a_unique_prefix(cli_run, prefect_api, tmp_path):
    name = f"refs-{uuid.uuid4().hex[:8]}"
    code, out, err = cli_run("run", "--config", one_node(tmp_path / "r.json", name=name), "--json")
    assert code == 0, err
    result = json.loads(out)
    run_name = read_run(result["run_id"]).name
    code, out, err = cli_run("show", run_name)
    assert code == 0 and f"Run ID: {result['run_id']}" in out, err
    code, out, err = cli_run("show", result["run_id"][:8])
    assert code == 0 and f"Run ID: {result['run_id']}" in out, err
    code, _, err = cli_run("approve", run_name)
    assert code == 2 and f"Flow run {run_name} is not waiting for an approval (it is Completed)" in err
    code, _, err = cli_run("show", "0")  # too short to be a prefix worth matching
    assert code == 2 and "Flow run not found: 0" in err


def test_doctor_on_a_fresh_checkout_is_ready_with_notes(cli_run, monkeypatch):
    for name in ("SLACK_WEBHOOK_URL", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PREFECT_API_URL")
    code, out, _ = cli_run("doctor")
    assert code == 0, out
    assert "! definition alert-triage: valid, ready; optional, not set: SLACK_WEBHOOK_URL" in out
    assert "OPENAI_API_KEY (node 'analyze' falls back to local)" in out
    assert out.splitlines()[-1].startswith("Ready, with 2 note(s)")


def test_doctor_tells_required_from_optional(cli_run, monkeypatch, tmp_path):
    nodes_ = [
        {"id": "a", "type": "notify", "config": {"driver": "webhook", "url": "${HOOK_URL_REQUIRED_X}"}},
        {
            "id": "b",
            "type": "notify",
            "required": False,
            "config": {"driver": "webhook", "url": "${OPT_ONE_X}"},
        },
        {
            "id": "c",
            "type": "notify",
            "config": {"driver": "webhook", "url": "${OPT_TWO_X:-http://127.0.0.1:9}"},
        },
    ]
    (tmp_path / "mixed.json").write_text(json.dumps({"version": "1.0", "nodes": nodes_}))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL")
    code, out, _ = cli_run("doctor")
    assert code == 1 and "✗ definition mixed: valid, but not set: HOOK_URL_REQUIRED_X" in out
    assert out.splitlines()[-1].startswith("Not ready")
    monkeypatch.setenv("HOOK_URL_REQUIRED_X", "http://127.0.0.1:9/never-printed")
    code, out, _ = cli_run("doctor")
    assert code == 0 and "never-printed" not in out
    assert "OPT_ONE_X (node 'b' is optional); OPT_TWO_X (has a default)" in out


def test_doctor_checks_that_every_command_stage_can_start(cli_run, tmp_path, monkeypatch):
    stages = [
        {"id": "ok", "type": "command", "config": {"command": ["python3", "-c", "pass"]}, "next": "missing"},
        {
            "id": "missing",
            "type": "command",
            "config": {"command": ["no-such-program-opsflow", "x"]},
            "next": "script",
        },
        {"id": "script", "type": "command", "config": {"command": ["./build.sh"], "cwd": "stages"}},
    ]
    (tmp_path / "stages").mkdir()
    (tmp_path / "stages" / "build.sh").write_text("#!/bin/sh\necho built\n")  # not executable yet
    (tmp_path / "staged.json").write_text(json.dumps({"version": "1.0", "nodes": stages}))
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL")
    code, out, _ = cli_run("doctor")
    assert code == 1
    assert "✗ definition staged: node 'missing': no-such-program-opsflow is not on PATH" in out
    script = tmp_path / "stages" / "build.sh"
    assert f"✗ definition staged: node 'script': ./build.sh: {script} is not an executable file" in out
    assert "node 'ok'" not in out
    (tmp_path / "stages" / "build.sh").chmod(0o755)
    stages[1]["config"]["command"] = ["sh", "-c", "true"]
    (tmp_path / "staged.json").write_text(json.dumps({"version": "1.0", "nodes": stages}))
    code, out, _ = cli_run("doctor")
    assert code == 0, out
