"""Input limits: bytes, depth, node count, directories, and two files claiming one name, via the CLI."""

from __future__ import annotations

import json

import pytest

from deployments.cli.envfile import parse_env_file
from flows.definition import load_definition, validate
from flows.limits import MAX_DEFINITION_BYTES, MAX_DEPTH, MAX_ENV_FILE_BYTES, MAX_NODES, MAX_PAYLOAD_BYTES
from nodes.errors import DefinitionError, OpsflowError

DEEP = "[" * 20000 + "]" * 20000
GOOD = {"version": "1.0", "nodes": [{"id": "a", "type": "transform", "config": {}}]}


@pytest.fixture
def definitions(tmp_path, monkeypatch):
    directory = tmp_path / "defs"
    directory.mkdir()
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(directory))
    return directory


def test_a_deep_definition_in_the_directory_does_not_crash_list_validate_or_doctor(cli_run, definitions):
    (definitions / "good.json").write_text(json.dumps(GOOD))
    (definitions / "deep.json").write_text('{"version": "1.0", "nodes": ' + DEEP + "}")
    code, out, err = cli_run("list")
    assert code == 0 and "good" in out and "deep" in out and "invalid" in out
    assert "Traceback" not in out + err
    code, out, err = cli_run("validate")
    assert code == 2 and "✓ good" in out
    assert f"nested more than {MAX_DEPTH} levels deep (the limit)" in err
    assert "Traceback" not in out + err and "RecursionError" not in out + err
    from deployments.cli.doctor import run_checks

    lines = [line for _, line in run_checks()]
    assert any(line.startswith("definition deep: invalid") and "nested more than" in line for line in lines)


def test_definition_bytes_and_node_count(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps({**GOOD, "description": "x" * MAX_DEFINITION_BYTES}))
    with pytest.raises(DefinitionError, match=rf"Config file {big} is over {MAX_DEFINITION_BYTES} bytes"):
        load_definition(big)
    many = [{"id": f"n{i}", "type": "transform"} for i in range(MAX_NODES + 1)]
    with pytest.raises(
        DefinitionError, match=rf"nodes: {MAX_NODES + 1} nodes, over {MAX_NODES} \(the limit\)"
    ):
        validate({"version": "1.0", "nodes": many})
    nested: dict = {}
    inner = nested
    for _ in range(20000):
        inner["x"] = {}
        inner = inner["x"]
    with pytest.raises(DefinitionError, match="definition: nested more than"):
        validate({**GOOD, "nodes": [{"id": "a", "type": "transform", "config": nested}]})


def test_a_directory_where_a_file_is_expected(cli_run, definitions, tmp_path):
    (definitions / "dir.json").mkdir()
    code, _, err = cli_run("run", "--config", str(definitions / "dir.json"), "--dry-run")
    assert code == 2 and f"Config file is a directory: {definitions / 'dir.json'}" in err
    code, _, err = cli_run("describe", "dir")
    assert code == 2 and "is a directory" in err
    (definitions / "good.json").write_text(json.dumps(GOOD))
    code, _, err = cli_run("run", "-d", "good", "--file", str(tmp_path), "--dry-run")
    assert code == 2 and f"Payload file is a directory: {tmp_path}" in err
    with pytest.raises(OpsflowError, match=f"Env file is a directory: {tmp_path}"):
        parse_env_file(tmp_path)


def test_payload_and_env_file_limits(cli_run, definitions, tmp_path):
    (definitions / "good.json").write_text(json.dumps(GOOD))
    code, _, err = cli_run("run", "-d", "good", "--payload", '{"a": ' + DEEP + "}", "--dry-run")
    assert code == 2 and f"--payload: nested more than {MAX_DEPTH} levels deep" in err
    assert "Traceback" not in err
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"a": "x" * MAX_PAYLOAD_BYTES}))
    code, _, err = cli_run("run", "-d", "good", "--file", str(big), "--dry-run")
    assert code == 2 and f"Payload file {big} is over {MAX_PAYLOAD_BYTES} bytes" in err
    env = tmp_path / "big.env"
    env.write_text("A=" + "x" * MAX_ENV_FILE_BYTES + "\n")
    with pytest.raises(OpsflowError, match=f"Env file {env} is over {MAX_ENV_FILE_BYTES} bytes"):
        parse_env_file(env)


def test_two_files_with_the_same_name_is_an_error_naming_both(cli_run, definitions):
    (definitions / "alpha.json").write_text(json.dumps(GOOD))
    (definitions / "other.json").write_text(json.dumps({**GOOD, "name": "alpha"}))
    (definitions / "fine.json").write_text(json.dumps(GOOD))
    expected = (
        f"definition name 'alpha' is used by two files: {definitions / 'alpha.json'} and "
        f"{definitions / 'other.json'}"
    )
    for ref in ("alpha", str(definitions / "other.json")):
        with pytest.raises(DefinitionError) as info:
            load_definition(ref)
        assert info.value.problems == [expected]
    assert load_definition("fine").name == "fine"
    code, _, err = cli_run("validate")
    assert code == 2 and expected in err
