"""The `pipeline` command: seed messages, exit codes, layouts; fast commands never import Prefect."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

PYTHON = sys.executable


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["run", "--definition", "nope"], 2, "Pipeline definition not found: nope"),
        (["run", "--config", "/no/such.json"], 2, "Config file not found: /no/such.json"),
        (
            ["run", "--definition", "health-check", "--config", "x.json"],
            2,
            "Cannot specify both --definition and --config",
        ),
        (["run"], 2, "Specify --definition NAME or --config PATH"),
        (["run", "-d", "health-check", "--payload", "{oops", "--dry-run"], 2, "Invalid JSON in --payload"),
        (
            ["run", "-d", "health-check", "--payload", "[1]", "--dry-run"],
            2,
            "The payload must be a JSON object",
        ),
        (
            ["run", "-d", "health-check", "--file", "/no/payload.json"],
            2,
            "Payload file not found: /no/payload.json",
        ),
        (
            ["run", "-d", "health-check", "--only", "metrics,ghost", "--dry-run"],
            2,
            "Unknown node id(s): ghost",
        ),
        (["describe", "nope"], 2, "Pipeline definition not found: nope"),
        (["run", "--bogus"], 2, "No such option: --bogus"),
    ],
)
def test_usage_errors(cli_run, args, code, message):
    got, out, err = cli_run(*args)
    assert got == code
    assert message in err
    assert "Traceback" not in err + out


def test_invalid_json_config(cli_run, tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    code, _, err = cli_run("run", "--config", str(path))
    assert code == 2 and err.startswith(f"Invalid JSON in config file: {path}")


def test_invalid_definition_lists_every_problem(cli_run, tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "nodes": [
                    {"id": "a", "type": "teleport", "next": "b"},
                    {"id": "b", "type": "context", "config": {"include": ["gpu"]}, "next": "zz"},
                ],
            }
        )
    )
    code, _, err = cli_run("run", "--config", str(path), "--dry-run")
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[0] == "Pipeline definition invalid:"
    assert any(line.startswith("  - node 'a': unknown node type 'teleport'") for line in lines)
    assert any(line.startswith("  - node 'b': config.include[0]:") for line in lines)
    assert "  - node 'b': next 'zz' is not a node of this definition" in lines
    code, out, err = cli_run("validate", str(path), "health-check")
    assert code == 2 and "✓ health-check" in out and f"✗ {path}" in err


def test_dry_run_layout_and_masked_secrets(cli_run, tmp_path, monkeypatch):
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.test/services/T000/B000/supersecretvalue")
    path = tmp_path / "with-secret.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "nodes": [
                    {"id": "metrics", "type": "context", "next": "notify"},
                    {
                        "id": "notify",
                        "type": "notify",
                        "config": {"driver": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"},
                    },
                ],
            }
        )
    )
    code, out, err = cli_run("run", "--config", str(path), "--dry-run", "--skip", "notify")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "=== DRY RUN ==="
    assert "Nodes (2):" in lines
    assert "  1. [context] metrics" in lines
    assert "     → next: notify" in lines
    assert "  2. [notify] notify" in lines and "     → end" in lines
    assert "     skipped: in --skip" in lines
    assert "  SLACK_WEBHOOK_URL: set" in lines
    assert "supersecretvalue" not in out + err
    assert '"webhook_url": "***"' in out
    code, out, err = cli_run("describe", str(path))
    assert code == 0 and "supersecretvalue" not in out + err and "***" in out


def test_list_schema_and_validate_all(cli_run):
    code, out, _ = cli_run("list")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["ai-triage", "alert-triage", "health-check"]
    code, out, _ = cli_run("schema")
    assert code == 0 and json.loads(out)["title"] == "opsflow pipeline definition"
    code, out, _ = cli_run("validate")
    assert code == 0 and "✓ health-check" in out


def test_doctor_names_missing_settings_never_values(cli_run, tmp_path, monkeypatch):
    (tmp_path / "needs-key.json").write_text(
        json.dumps(
            {
                "version": "1.0",
                "nodes": [
                    {
                        "id": "analyze",
                        "type": "intelligence",
                        "config": {"provider": "openai"},
                        "next": "tell",
                    },
                    {
                        "id": "tell",
                        "type": "notify",
                        "config": {"driver": "console", "title": "${OPSFLOW_TITLE_VALUE}"},
                    },
                ],
            }
        )
    )
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(tmp_path))
    monkeypatch.delenv("PREFECT_API_URL")  # the local server on demand: nothing to reach yet
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPSFLOW_TITLE_VALUE", "title-value-should-not-print")
    code, out, _ = cli_run("doctor")
    assert code == 1
    assert "✗ definition needs-key: valid, but not set: OPENAI_API_KEY" in out
    assert "title-value-should-not-print" not in out
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-printed-123456")
    code, out, _ = cli_run("doctor")
    assert code == 0 and "✓ definition needs-key: valid, settings present" in out
    assert "sk-test" not in out


FAST_COMMANDS = [
    ["list"],
    ["describe", "health-check"],
    ["validate"],
    ["schema"],
    ["run", "--definition", "health-check", "--dry-run"],
]


@pytest.mark.parametrize("args", FAST_COMMANDS, ids=lambda a: " ".join(a))
def test_fast_commands_never_import_prefect(args):
    code = (
        "import sys\n"
        "from deployments.cli.app import main\n"
        f"sys.argv = ['pipeline', *{args!r}]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = ('prefect.', 'openai', 'sqlalchemy', 'asyncio', 'ssl')  # startup time\n"
        "loaded = [m for m in sys.modules if m == 'prefect' or m.startswith(heavy)]\n"
        "assert not loaded, loaded[:5]\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    done = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr


def test_run_json_and_text_against_the_session_server(cli_run, prefect_api, monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    path = tmp_path / "two.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "nodes": [
                    {"id": "pick", "type": "transform", "config": {"mapping": {"host": "payload.host"}}},
                    {
                        "id": "say",
                        "type": "notify",
                        "config": {"driver": "console", "title": "hello {{ nodes.pick.host }}"},
                    },
                ],
            }
        )
    )
    code, out, err = cli_run("run", "--config", str(path), "--payload", '{"host": "db-01"}', "--json")
    assert code == 0, err
    result = json.loads(out)  # stdout holds the result only; the console notification went to stderr
    assert result["status"] == "completed" and result["definition"] == "two"
    assert result["node_results"]["pick"]["output"] == {"host": "db-01"}
    assert "hello db-01" in err
    assert "▶ [1/2] transform pick … done in" in err
    code, out, err = cli_run("run", "--config", str(path), "--payload", '{"host": "web-02"}')
    assert code == 0
    assert "PIPELINE RESULT" in out and "--- transform (pick) ---" in out and "Definition: two" not in out
    assert out.rstrip().endswith("✓ Pipeline completed successfully")


def test_failed_run_exits_1_with_message(cli_run, prefect_api, monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    path = tmp_path / "fails.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "nodes": [{"id": "t", "type": "transform", "config": {"expression": "length(payload.n)"}}],
            }
        )
    )
    code, out, err = cli_run("run", "--config", str(path))
    assert code == 1
    assert "Pipeline failed: node 't': JMESPath 'length(payload.n)' failed: In function length()" in err
    assert "✗ Pipeline failed" in out


def test_cli_run_on_the_ephemeral_default_records_every_task_run(tmp_path):
    """A 20-node run in a fresh process; a second fresh process finds all 20 task runs in the database."""
    path = tmp_path / "twenty.json"
    nodes_ = [{"id": f"n{i:02d}", "type": "transform", "config": {"expression": f"`{i}`"}} for i in range(20)]
    path.write_text(json.dumps({"version": "1.0", "nodes": nodes_}))
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env["PREFECT_HOME"] = str(home)
    done = subprocess.run(
        [PYTHON, "-m", "deployments.cli", "run", "--config", str(path), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert len(result["executed_nodes"]) == 20
    count = subprocess.run(
        [
            PYTHON,
            "-c",
            "import sqlite3, sys; db = sqlite3.connect(sys.argv[1]);"
            "q = 'select count(*) from task_run where flow_run_id = ?';"
            "print(db.execute(q, (sys.argv[2],)).fetchone()[0])",
            str(home / "prefect.db"),
            result["run_id"],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert count.stdout.strip() == "20", count.stderr


def test_one_run_validates_its_definition_file_once(cli_run, prefect_api, monkeypatch, tmp_path):
    """The CLI, the flow and each hook load the definition; a file is validated once per content."""
    import flows.definition
    import flows.validation

    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    checked: list[str] = []
    loads: list[str] = []
    validate, load_file = flows.validation.validate_definition, flows.definition._validated_file

    def counting(raw, **kwargs):
        checked.append(kwargs.get("source", "?"))
        return validate(raw, **kwargs)

    def loading(path, content, name):
        loads.append(str(path))
        return load_file(path, content, name)

    monkeypatch.setattr(flows.validation, "validate_definition", counting)
    monkeypatch.setattr(flows.definition, "_validated_file", loading)
    path = tmp_path / f"once-{uuid.uuid4().hex[:8]}.json"
    path.write_text(
        json.dumps(
            {
                "version": "1.0",
                "on_start": [{"driver": "console", "title": "starting"}],
                "on_success": [{"driver": "console", "title": "done"}],
                "nodes": [{"id": "say", "type": "notify", "config": {"driver": "console", "title": "hi"}}],
            }
        )
    )
    code, _, err = cli_run("run", "--config", str(path))
    assert code == 0, err
    # loaded by the CLI, the flow, and its on_start and on_success hooks; validated the first time
    assert loads == [str(path)] * 4 and checked == [str(path)]
