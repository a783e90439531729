"""The `command` node with real programs: argv and shell, cwd, env and secrets, exit codes, JSON
output, artifacts against JSON Schemas, logs, dry run and config validation."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import textwrap
from pathlib import Path

import pytest

from flows.definition import validate
from nodes.base import NodeContext, RunInfo, Secrets
from nodes.errors import ConfigError, DefinitionError, NodeError
from nodes.runtime import execute_node

pytestmark = pytest.mark.timeout(60)

SECRET = "s3cr3t-Token-value-0123456789"
MODULES_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["modules"],
    "properties": {
        "modules": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "integer"}}},
        }
    },
}


def script(directory: Path, name: str, body: str) -> str:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return name


def ctx(directory: Path, **fields) -> NodeContext:
    return NodeContext(
        run=RunInfo(trace_id="t-cmd", definition="cmd", definition_dir=str(directory), environment="staging"),
        secrets=Secrets(),
        **fields,
    )


def command(config: dict, directory: Path, **fields) -> dict:
    return execute_node("build", "command", config, ctx(directory, **fields))


def definition(config: dict) -> dict:
    return {"name": "cmd", "version": "1.0", "nodes": [{"id": "build", "type": "command", "config": config}]}


def test_argv_run_records_exit_streams_duration_and_resources(tmp_path):
    name = script(
        tmp_path,
        "work.py",
        """
        import sys
        block = bytearray(60 * 1024 * 1024)  # resident once touched
        for i in range(0, len(block), 4096):
            block[i] = 1
        total = 0
        for i in range(3_000_000):
            total += i
        print("built", total)
        print("careful", file=sys.stderr)
        """,
    )
    result = command({"command": ["python3", name]}, tmp_path)
    out = result["output"]
    assert out["exit_code"] == 0 and out["argv"] == ["python3", name]
    assert out["stdout"] == f"built {sum(range(3_000_000))}\n" and out["stderr"] == "careful\n"
    assert out["duration_ms"] > 0 and out["artifacts"] == []
    assert out["cpu_seconds"] > 0.05
    assert out["peak_rss_bytes"] >= 60 * 1024 * 1024
    assert result["summary"].startswith(f"command: python3 {name} exited 0 in ")
    assert "peak RSS" in result["summary"]


def test_python3_is_the_project_interpreter_in_argv_and_in_a_shell_line(tmp_path):
    out = command({"command": ["python3", "-c", "import sys; print(sys.executable)"]}, tmp_path)["output"]
    assert out["stdout"].strip() == sys.executable
    shell = {"shell": "python3 -c 'import sys; print(sys.executable)'; echo \"$GREETING\" >&2"}
    out = command({**shell, "env": {"GREETING": "hi there"}}, tmp_path)["output"]
    # the interpreter's directory is first on the PATH the program sees: the venv's python3
    assert Path(out["stdout"].strip()).parent == Path(sys.executable).parent
    assert out["stderr"] == "hi there\n"
    assert out["argv"][:2] == ["sh", "-c"]
    # a python3 given as an absolute path is that program, not opsflow's interpreter
    own = tmp_path / "elsewhere" / "python3"
    own.parent.mkdir()
    own.write_text('#!/bin/sh\necho "another python3 $1"\n')
    own.chmod(0o755)
    out = command({"command": [str(own), "-V"]}, tmp_path)["output"]
    assert out["stdout"] == "another python3 -V\n" and out["argv"][0] == str(own)


def test_a_templated_argument_stays_one_literal_argument(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("still here")
    value = f"a b; rm -rf {victim} $(touch {tmp_path}/pwned) `id`"
    name = script(tmp_path, "argv.py", "import json, sys; print(json.dumps(sys.argv[1:]))")
    config = {"command": ["python3", name, "--env", "{{ run.environment }}", "{{ payload.value }}"]}
    out = command(config, tmp_path, payload={"value": value})["output"]
    assert json.loads(out["stdout"]) == ["--env", "staging", value]
    assert victim.read_text() == "still here" and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("first", ["{{ payload.program }}", "${PROGRAM}", "py{% if 1 %}thon3{% endif %}"])
def test_command0_is_never_templated(tmp_path, first):
    with pytest.raises(DefinitionError) as info:
        validate(definition({"command": [first, "x.py"]}))
    assert "command[0] must be written out" in str(info.value)
    assert "the executable never comes from the payload" in str(info.value)
    with pytest.raises(ConfigError, match=r"command\[0\] must be written out"):  # run-stage path too
        command({"command": [first, "x.py"]}, tmp_path, payload={"program": "python3"})


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, "exactly one of `command`"),
        ({"command": ["true"], "shell": "true"}, "exactly one of `command`"),
        ({"shell": "echo {{ payload.x }}"}, "a shell string takes no {{ }} templates"),
        ({"command": []}, "at least 1 item"),
        ({"command": ["true"], "env": {"A=B": "x"}}, "is not an environment variable name"),
        ({"command": ["true"], "env": {"N": 1}}, "config.env.N: Input should be a valid string"),
        ({"command": ["true"], "output": "yaml"}, "config.output"),
        (
            {"command": ["true"], "artifacts": [{"path": "a.json", "schema": {"type": 5}}]},
            "not a valid JSON Schema",
        ),
        ({"command": ["true"], "artifacts": [{"path": "a", "schema": {"$schema": "urn:nope"}}]}, "urn:nope"),
    ],
)
def test_config_mistakes_are_validation_errors(config, expected):
    with pytest.raises(DefinitionError) as info:
        validate(definition(config))
    assert expected in str(info.value), info.value.problems


def test_cwd_is_relative_to_the_definition_directory(tmp_path):
    (tmp_path / "stage").mkdir()
    out = command({"command": ["python3", "-c", "import os; print(os.getcwd())"], "cwd": "stage"}, tmp_path)
    assert out["output"]["stdout"].strip() == str(tmp_path / "stage") == out["output"]["cwd"]
    with pytest.raises(ConfigError, match=r"config.cwd: .*nowhere is not a directory"):
        command({"command": ["true"], "cwd": "nowhere"}, tmp_path)
    with pytest.raises(ConfigError, match=r"program 'no-such-program-x' not found"):
        command({"command": ["no-such-program-x"]}, tmp_path)


def test_the_definition_directory_is_its_files_or_the_working_directory(tmp_path):
    from flows.definition import load_definition

    path = tmp_path / "stages.json"
    path.write_text(json.dumps(definition({"command": ["true"]})))
    assert load_definition(path).directory == str(tmp_path)
    assert validate(definition({"command": ["true"]})).directory == os.getcwd()  # inline


def test_env_merges_over_the_environment_and_secret_values_show_nowhere(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPSFLOW_TEST_CMD_TOKEN", SECRET)
    monkeypatch.setenv("OPSFLOW_TEST_CMD_INHERITED", "from-parent")
    name = script(
        tmp_path,
        "env.py",
        """
        import os, sys
        print(os.environ["API_TOKEN"], os.environ["OPSFLOW_TEST_CMD_INHERITED"], os.environ["PLAIN"])
        print("auth failed for", os.environ["API_TOKEN"], file=sys.stderr)
        sys.exit(int(sys.argv[1]))
        """,
    )
    env = {"API_TOKEN": "${OPSFLOW_TEST_CMD_TOKEN}", "PLAIN": "plain-value"}
    caplog.set_level(logging.INFO, logger="opsflow.nodes")
    result = command({"command": ["python3", name, "0"], "env": env}, tmp_path)
    assert result["output"]["stdout"] == "*** from-parent plain-value\n"
    assert result["output"]["stderr"] == "auth failed for ***\n"
    with pytest.raises(NodeError) as info:
        command({"command": ["python3", name, "4"], "env": env}, tmp_path)
    assert "exit code 4" in info.value.message and "auth failed for ***" in info.value.message
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "auth failed for ***" in logged and "from-parent" in logged
    for text in (json.dumps(result), info.value.message, logged):
        assert SECRET not in text
    # a literal value typed under a credential's name is just as secret: at run time, and where a
    # definition is shown (describe, dry-run, the receiver) or published
    typed = {"command": ["python3", name, "0"], "env": {**env, "API_TOKEN": SECRET}}
    assert SECRET not in json.dumps(command(typed, tmp_path))
    from flows.render import shown_config
    from flows.typed_keys import typed_in_keys

    assert shown_config("command", typed)["env"] == {"API_TOKEN": "***", "PLAIN": "plain-value"}
    assert typed_in_keys(definition(typed)) == ["node 'build' config.env.API_TOKEN"]


def test_a_failing_exit_code_is_retryable_with_the_last_stderr_lines(tmp_path):
    name = script(
        tmp_path,
        "fail.py",
        """
        import sys
        for i in range(30):
            print(f"trace line {i}", file=sys.stderr)
        print("ValueError: the build broke", file=sys.stderr)
        sys.exit(int(sys.argv[1]))
        """,
    )
    with pytest.raises(NodeError) as info:
        command({"command": ["python3", name, "3"]}, tmp_path)
    message = info.value.message
    assert message.splitlines()[0] == "node 'build': exit code 3"
    assert "ValueError: the build broke" in message and "trace line 29" in message
    assert "trace line 5\n" not in message and "last 10 of 31 lines" in message
    assert info.value.retryable and info.value.details["exit_code"] == 3
    assert info.value.details["cpu_seconds"] is not None  # for the execution report
    finer = {"command": ["python3", name, "3"], "retry_on_exit_codes": [75]}
    with pytest.raises(NodeError) as info:
        command(finer, tmp_path)
    assert not info.value.retryable
    with pytest.raises(NodeError) as info:
        command({**finer, "command": ["python3", name, "75"]}, tmp_path)
    assert info.value.retryable and "exit code 75" in info.value.message
    ok = command({"command": ["python3", name, "3"], "success_codes": [0, 3]}, tmp_path)
    assert ok["output"]["exit_code"] == 3


def test_json_output_is_parsed_and_bad_json_fails_naming_the_problem(tmp_path):
    good = {"command": ["python3", "-c", "import json; print(json.dumps({'count': 2, 'ok': True}))"]}
    out = command({**good, "output": "json"}, tmp_path)
    assert out["output"]["parsed"] == {"count": 2, "ok": True}
    assert out["summary"].endswith(", JSON output")
    with pytest.raises(NodeError, match="stdout is not JSON: Expecting value at line 1 column 1") as info:
        command({"command": ["python3", "-c", "print('done!')"], "output": "json"}, tmp_path)
    assert not info.value.retryable
    with pytest.raises(NodeError, match="stdout is empty"):
        command({"command": ["true"], "output": "json"}, tmp_path)


def _artifact_script(tmp_path: Path) -> str:
    return script(
        tmp_path,
        "make.py",
        """
        import json, os, sys
        os.makedirs("dist", exist_ok=True)
        with open("dist/modules.json", "w") as f:
            json.dump(json.loads(sys.argv[1]), f)
        """,
    )


def test_a_valid_artifact_is_recorded_with_size_and_hash(tmp_path):
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "modules.schema.json").write_text(json.dumps(MODULES_SCHEMA))
    name = _artifact_script(tmp_path)
    document = json.dumps({"modules": [{"name": 1}, {"name": 2}]})
    config = {
        "command": ["python3", name, document],
        "artifacts": [
            {"path": "dist/modules.json", "schema": "schemas/modules.schema.json"},
            {"path": "dist/modules.json", "schema": MODULES_SCHEMA},
            {"path": "dist/maybe.json", "schema": MODULES_SCHEMA, "optional": True},
        ],
    }
    result = command(config, tmp_path)
    written = (tmp_path / "dist" / "modules.json").read_bytes()
    first, inline, maybe = result["output"]["artifacts"]
    assert first == {
        "path": "dist/modules.json",
        "exists": True,
        "bytes": len(written),
        "sha256": hashlib.sha256(written).hexdigest(),
        "valid": True,
    }
    assert inline == first and maybe["exists"] is False and maybe["valid"] is None
    assert result["summary"].endswith(", 2 artifacts valid")


def test_an_invalid_artifact_fails_with_json_paths_of_its_violations(tmp_path):
    name = _artifact_script(tmp_path)
    document = json.dumps({"modules": [{"name": "x"}, {"name": 2}, {}]})
    config = {
        "command": ["python3", name, document],
        "artifacts": [{"path": "dist/modules.json", "schema": MODULES_SCHEMA}],
    }
    with pytest.raises(NodeError) as info:
        command(config, tmp_path)
    message = info.value.message
    assert message.startswith("node 'build': artifact dist/modules.json: not valid against its inline schema")
    assert "$.modules[0].name: 'x' is not of type 'integer'" in message
    assert "$.modules[2]: 'name' is a required property" in message
    assert message.index("$.modules[0]") < message.index("$.modules[2]")
    assert not info.value.retryable
    assert info.value.details["artifacts"][0]["valid"] is False


def test_a_missing_or_non_json_artifact_fails_naming_the_file(tmp_path):
    with pytest.raises(NodeError) as info:
        command(
            {"command": ["true"], "artifacts": [{"path": "dist/modules.json", "schema": MODULES_SCHEMA}]},
            tmp_path,
        )
    assert "artifact dist/modules.json: missing" in info.value.message and not info.value.retryable
    (tmp_path / "notes.txt").write_text("not json")
    with pytest.raises(NodeError, match="artifact notes.txt: not JSON: Expecting value at line 1 column 1"):
        command({"command": ["true"], "artifacts": [{"path": "notes.txt", "schema": True}]}, tmp_path)
    plain = command(
        {"command": ["true"], "artifacts": [{"path": "notes.txt"}]}, tmp_path
    )  # no schema: exists
    assert plain["output"]["artifacts"][0]["valid"] is True


def test_a_schema_file_missing_or_invalid_is_a_validation_error_beside_the_definition(tmp_path):
    (tmp_path / "bad.schema.json").write_text('{"type": "nonsense"}')
    (tmp_path / "broken.schema.json").write_text("{not json")
    raw = definition(
        {
            "command": ["true"],
            "artifacts": [
                {"path": "a.json", "schema": "missing.schema.json"},
                {"path": "b.json", "schema": "bad.schema.json"},
                {"path": "c.json", "schema": "broken.schema.json"},
            ],
        }
    )
    path = tmp_path / "cmd.json"
    path.write_text(json.dumps(raw))
    from flows.definition import load_definition

    with pytest.raises(DefinitionError) as info:
        load_definition(path)
    problems = "\n".join(info.value.problems)
    assert f"schema file not found: {tmp_path / 'missing.schema.json'}" in problems
    assert "bad.schema.json: not a valid JSON Schema: $.type" in problems
    assert "broken.schema.json is not JSON" in problems
    # a definition that names no file (inline, or sent to the receiver) gets no file read for it
    assert validate(raw, source="request").name == "cmd"
    # at run time it fails before anything runs
    marker = tmp_path / "ran"
    config = {
        "command": ["touch", str(marker)],
        "artifacts": [{"path": "a.json", "schema": "missing.schema.json"}],
    }
    with pytest.raises(ConfigError, match=r"config.artifacts\[0\].schema: schema file not found"):
        command(config, tmp_path)
    assert not marker.exists()


def test_output_lines_stream_to_the_log_capped_and_the_tails_keep_64_kib(tmp_path, caplog):
    name = script(
        tmp_path,
        "chatty.py",
        """
        import sys
        print("x" * 5000)
        for i in range(1500):
            print(f"line {i:05d} " + "y" * 60)
        print("last words", file=sys.stderr)
        """,
    )
    caplog.set_level(logging.INFO, logger="opsflow.nodes")
    out = command({"command": ["python3", name]}, tmp_path)["output"]
    messages = [r.getMessage() for r in caplog.records if r.name == "opsflow.nodes"]
    assert messages[0] == "x" * 1000 + "…"
    assert len(messages) == 1001 and messages[-1] == "… 502 more output lines not logged"
    assert out["stdout_truncated"] and len(out["stdout"].encode()) <= 64 * 1024
    assert out["stdout"].startswith("line ") and out["stdout"].endswith("line 01499 " + "y" * 60 + "\n")
    assert out["stderr"] == "last words\n" and not out["stderr_truncated"]


def test_a_line_is_logged_while_the_stage_still_runs(tmp_path):
    """ "Output lines reach the task run's log as they come": the stage waits for the test to
    have seen its first line in the log before it writes its second and ends."""
    import threading

    go_on = tmp_path / "go-on"
    name = script(
        tmp_path,
        "waits.py",
        f"""
        import os, sys, time
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while not os.path.exists({str(go_on)!r}):
            if time.monotonic() > deadline:
                sys.exit("nobody saw the first line")
            time.sleep(0.05)
        print("done")
        """,
    )
    seen = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "ready":
                seen.set()

    logger = logging.getLogger("opsflow.nodes")
    watch, level = Watch(), logger.level
    logger.addHandler(watch)
    logger.setLevel(logging.INFO)
    outcome: dict = {}
    stage = threading.Thread(target=lambda: outcome.update(command({"command": ["python3", name]}, tmp_path)))
    try:
        stage.start()
        assert seen.wait(30), "the first line was not logged while the stage ran"
        assert stage.is_alive()  # still waiting for go-on: the line came before the end
        go_on.touch()
        stage.join(60)
    finally:
        logger.removeHandler(watch)
        logger.setLevel(level)
    assert outcome["output"]["stdout"] == "ready\ndone\n" and outcome["output"]["exit_code"] == 0


def test_dry_run_starts_nothing_and_says_what_would_run(tmp_path):
    marker = tmp_path / "ran"
    config = {"command": ["touch", str(marker), "{{ payload.x }}"], "env": {"API_TOKEN": SECRET}}
    result = command(config, tmp_path, dry_run=True)
    assert result["output"] == {
        "dry_run": True,
        "argv": config["command"],
        "cwd": str(tmp_path),
        "env": ["API_TOKEN"],
    }
    assert result["summary"].startswith("command: would run touch ")
    from nodes.command import node

    # the CLI's --dry-run preview: a reference it cannot resolve here is shown masked
    config["env"]["API_TOKEN"] = "${NOT_SET_ANYWHERE}"
    assert node.preview(config, ctx(tmp_path)) == [result["output"]]
    assert not marker.exists()


def test_a_stage_gets_no_secret_of_the_environment_unless_its_env_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("OPSFLOW_STAGE_API_KEY", "sk-stage-secret-0123456789abcdef")
    monkeypatch.setenv("OPSFLOW_STAGE_REGION", "eu-west-1")
    echo = {"shell": "echo key=[$OPSFLOW_STAGE_API_KEY] region=[$OPSFLOW_STAGE_REGION] given=[$GIVEN]"}
    out = command(echo, tmp_path)["output"]
    assert "key=[] region=[eu-west-1] given=[]" in out["stdout"]
    out = command({**echo, "env": {"GIVEN": "${OPSFLOW_STAGE_API_KEY}"}}, tmp_path)["output"]
    assert "sk-stage-secret" not in json.dumps(out) and "given=[***]" in out["stdout"]


def test_an_artifact_path_or_schema_cannot_come_from_the_payload():
    for artifact in ({"path": "{{ payload.p }}"}, {"path": "out.json", "schema": "{{ payload.s }}"}):
        with pytest.raises(DefinitionError, match="written out, not a template or reference"):
            validate(definition({"command": ["python3", "-c", "pass"], "artifacts": [artifact]}))
    # and at run time, for a definition that skipped validation (run-stage of an inline config)
    with pytest.raises(ConfigError, match="is written out, not a"):
        command({"command": ["python3", "-c", "pass"], "artifacts": [{"path": "{{ payload.p }}"}]}, Path("."))
