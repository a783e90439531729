"""The `pipeline` contract every command shares: exit codes, one-line errors, the seed layouts."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import pytest
from support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "args, message",
    [
        (["approve", "nope"], "Flow run not found: nope"),
        (["approve", str(uuid.uuid4())], "Flow run not found: "),
        (["show", str(uuid.uuid4())], "Flow run not found: "),
        (["logs", str(uuid.uuid4())], "Flow run not found: "),
        (["incidents", "abc"], "Incident id must be a number: abc"),
        (["incidents", "987654321"], "Incident not found: 987654321"),
        (["pull", "no-such-block"], "Pipeline definition not found: block no-such-block"),
        (
            ["run", "-d", "health-check", "--only", "metrics", "--skip", "metrics"],
            "in both --only and --skip",
        ),
        (
            ["run", "-d", "health-check", "--only", "metrics", "--skip", "metrics", "--dry-run"],
            "Node id(s) in both --only and --skip: metrics",
        ),
    ],
)
def test_usage_and_not_found_exit_2_for_every_command(cli_run, prefect_api, args, message):
    code, out, err = cli_run(*args)
    assert (code, message in err) == (2, True), (code, err)
    assert "Traceback" not in out + err
    assert len(err.strip().splitlines()) == 1


def test_verbose_adds_the_traceback(cli_run, prefect_api):
    code, _, err = cli_run("approve", "nope", "-v")
    assert code == 2 and "Traceback" in err and "Flow run not found: nope" in err.splitlines()[-1]


def test_a_failed_run_exits_1_and_says_so_once(cli_run, prefect_api, tmp_path):
    url = f"http://127.0.0.1:{free_port()}/closed"
    hook = {"id": "t", "type": "notify", "retries": 0, "config": {"driver": "webhook", "url": url}}
    path = tmp_path / "fails.json"
    path.write_text(json.dumps({"version": "1.0", "nodes": [hook]}))
    code, out, err = cli_run("run", "--config", str(path))
    assert code == 1
    assert err.count("Pipeline failed:") == 1, err


def test_dry_run_has_the_seed_lines(cli_run, tmp_path):
    code, out, err = cli_run(
        "run", "-d", "health-check", "--dry-run", "--source", "cron", "--environment", "staging",
        "--payload", '{"host": "db-01"}',
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["=== DRY RUN ===", "Pipeline Definition: health-check"]
    for line in (
        "Source: cron",
        "Environment: staging",
        "Nodes (6):",
        "  1. [context] metrics",
        "     → end",
    ):
        assert line in lines, line
    assert lines[lines.index("  1. [context] metrics") + 2].startswith("     Config: {")
    assert "     → next: analyze, all-clear" in lines
    payload = out.split("Payload:\n", 1)[1].rsplit("\n\nUse without", 1)[0]
    assert json.loads(payload) == {"host": "db-01"}
    assert lines[-1] == "Use without --dry-run to execute"
    path = tmp_path / "copy.json"
    path.write_text((ROOT / "definitions" / "health-check.json").read_text())
    code, out, _ = cli_run("run", "--config", str(path), "--dry-run")
    assert code == 0 and out.splitlines()[1] == f"Pipeline Config: {path}"


def test_result_has_the_seed_lines_per_node_type(cli_run, prefect_api, tmp_path):
    from nodes.ingest.samples import SAMPLE_PAYLOAD

    path = tmp_path / "seed-result.json"
    path.write_text(
        json.dumps(
            {
                "name": "seed-result",
                "version": "1.0",
                "nodes": [
                    {"id": "ingest", "type": "ingest", "next": "metrics"},
                    {
                        "id": "metrics",
                        "type": "context",
                        # the sample alert is about other hosts: collect this host's memory anyway
                        "config": {"include": ["memory"], "other_targets": "collect"},
                        "next": "analyze",
                    },
                    {
                        "id": "analyze",
                        "type": "intelligence",
                        "config": {"provider": "local"},
                        "next": "tell",
                    },
                    {"id": "tell", "type": "notify", "config": {"driver": "console"}, "next": "never"},
                    {"id": "never", "type": "notify", "when": "`false`", "config": {"driver": "console"}},
                ],
            }
        )
    )
    code, out, err = cli_run("run", "--config", str(path), "--payload", json.dumps(SAMPLE_PAYLOAD))
    assert code == 0, err
    text = out[out.index("=" * 60) :]
    lines = text.splitlines()
    assert lines[:3] == ["=" * 60, "PIPELINE RESULT", "=" * 60]
    assert lines[3] == "Status: completed" and lines[4] == f"Config: {path}"
    assert lines[5].startswith("Trace ID: ") and lines[6].startswith("Run ID: ")
    assert lines[7].startswith("Duration: ")

    def block(node: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.endswith(f"({node}) ---"))
        return lines[start : lines.index("", start)]

    assert block("ingest")[0] == "--- ingest (ingest) ---"
    assert any(line.startswith("  Incident ID: ") and line[-1].isdigit() for line in block("ingest"))
    assert any(line.startswith("  Alerts created: ") for line in block("ingest"))
    assert "  Checks run: 1 (memory)" in block("metrics")
    assert any(line.startswith("  Summary: ") and len(line) <= 111 for line in block("analyze"))
    assert "  Provider: local (rules-v1)" in block("analyze")
    assert block("tell")[1:4] == ["  Driver: console", "  Channels attempted: 1", "  Succeeded: 1"]
    assert any(line.startswith("  Duration: ") for line in block("tell"))
    assert block("never")[1].startswith("  (skipped)")
    assert lines[-1] == "✓ Pipeline completed successfully"


def test_ingest_output_carries_the_seed_keys(monkeypatch, tmp_path):
    import nodes
    from nodes.base import NodeContext, RunInfo
    from nodes.ingest.samples import SAMPLE_PAYLOAD
    from nodes.runtime import execute_node

    monkeypatch.setitem(nodes.NODE_TYPES, "ingest", "nodes.ingest.node")
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", f"sqlite:///{tmp_path / 'seed.db'}")

    def ingest(payload: dict) -> dict:
        ctx = NodeContext(run=RunInfo(trace_id="seed"), payload=payload)
        return execute_node("ingest", "ingest", {}, ctx)["output"]

    first = ingest(SAMPLE_PAYLOAD)
    alerts = len(SAMPLE_PAYLOAD["alerts"])
    assert (first["alerts_created"], first["alerts_updated"], first["alerts_resolved"]) == (alerts, 0, 0)
    assert (first["incidents_created"], first["incidents_updated"]) == (1, 0)
    assert (
        first["incident_id"] == first["incident"]["id"] and first["severity"] == first["incident"]["severity"]
    )
    assert first["alert_fingerprint"] == first["incident"]["alerts"][0]["fingerprint"]
    resolved = json.loads(json.dumps(SAMPLE_PAYLOAD))
    resolved["status"] = "resolved"
    for alert in resolved["alerts"]:
        alert["status"] = "resolved"
    again = ingest(resolved)
    assert (again["alerts_created"], again["alerts_updated"], again["alerts_resolved"]) == (0, alerts, alerts)
    assert (again["incidents_created"], again["incidents_updated"]) == (0, 1)


def test_the_files_the_readme_uses_are_shipped_and_work(cli_run):
    readme = (ROOT / "README.md").read_text()
    using = readme.split("## Using it", 1)[1].split("\n## ", 1)[0]
    mentioned = sorted(set(re.findall(r"\bexamples/[\w.\-/]+", using)))
    assert mentioned == ["examples/.env.example", "examples/alert.json"]
    assert all((ROOT / path).is_file() for path in mentioned)
    code, out, err = cli_run(
        "run", "-d", "alert-triage", "--file", str(ROOT / "examples/alert.json"), "--dry-run"
    )
    assert code == 0 and '"receiver": "alertmonitor_swarm"' in out, err
    code, _, err = cli_run(
        "run", "-d", "health-check", "--env-file", str(ROOT / "examples/.env.example"), "--dry-run"
    )
    assert code == 0, err
