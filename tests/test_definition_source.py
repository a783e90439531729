"""Which source a run of a definition uses, told without loading it, agrees with what
`load_definition` then loads (against the session's Prefect server for blocks)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from nodes.errors import DefinitionError

pytestmark = pytest.mark.timeout(120)


def definition(name: str, description: str = "from the file") -> dict:
    return {
        "name": name,
        "version": "1.0",
        "description": description,
        "nodes": [{"id": "tell", "type": "notify", "config": {"driver": "console", "title": "hi"}}],
    }


@pytest.fixture
def defs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "definitions"
    directory.mkdir()
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(directory))
    return directory


@pytest.fixture
def name() -> str:
    return f"src-{uuid.uuid4().hex[:10]}"


def published_block(defs_dir: Path, name: str) -> None:
    from flows.catalog import publish

    path = defs_dir / f"{name}.json"
    path.write_text(json.dumps(definition(name, "from the block")))
    publish(name)
    path.unlink()


def test_a_file_wins_over_a_block_of_the_same_name(prefect_api, defs_dir, name, cli_run):
    from flows.definition import load_definition
    from flows.definition_source import definition_source

    published_block(defs_dir, name)
    path = defs_dir / f"{name}.json"
    path.write_text(json.dumps(definition(name)))
    told = definition_source(name)
    assert (told.kind, told.where) == ("file", str(path))
    assert told.line() == (
        f"the file {path} (it wins over a Prefect block of the same name; block:{name} runs the block)"
    )
    code, out, _ = cli_run("describe", name)  # what `describe` tells a person
    assert code == 0 and f"\nRuns from: {told.line()}\n" in out
    code, out, _ = cli_run("describe", f"block:{name}")
    assert code == 0 and f"Runs from: the Prefect block opsflow-pipeline-definition/{name} " in out
    assert load_definition(name).source == str(path)

    explicit = definition_source(f"block:{name}")
    assert (explicit.kind, explicit.where) == ("block", name)
    assert explicit.line() == (
        f"the Prefect block opsflow-pipeline-definition/{name} (asked for as block:{name})"
    )
    assert load_definition(f"block:{name}").source.startswith(f"block:{name}@r")
    assert definition_source(name, source="block").kind == "block"
    assert load_definition(name, source="block").description == "from the block"


def test_a_name_without_a_file_runs_its_block_when_an_api_is_configured(prefect_api, defs_dir, name):
    from flows.definition import load_definition
    from flows.definition_source import definition_source

    published_block(defs_dir, name)
    told = definition_source(name)
    assert (told.kind, told.where) == ("block", name)
    assert f"no file {defs_dir / f'{name}.json'}" in told.line()
    assert load_definition(name).description == "from the block"

    with pytest.raises(DefinitionError, match="not found"):
        load_definition(name, source="file")
    assert definition_source(name, source="file").kind == "file"


def test_without_an_api_a_missing_file_is_missing(defs_dir, monkeypatch, tmp_path, name):
    from flows.definition import load_definition
    from flows.definition_source import definition_source

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))
    told = definition_source(name)
    assert told.kind == "missing"
    assert told.line() == (
        f"nowhere: {defs_dir / f'{name}.json'} is not found "
        "(no such file, and no Prefect API to look for a block in)"
    )
    with pytest.raises(DefinitionError, match="not found"):
        load_definition(name)


def test_paths_inline_json_and_names_that_are_no_definition(defs_dir, tmp_path):
    from flows.definition import load_definition
    from flows.definition_source import definition_source

    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps(definition("elsewhere")))
    assert definition_source(str(path)).kind == definition_source(path).kind == "file"
    assert load_definition(str(path)).source == str(path)
    assert definition_source(definition("x")).line() == "inline JSON (the run's `definition` parameter)"

    (defs_dir / "schema.json").write_text("{}")
    assert definition_source("schema").kind == "missing"
    with pytest.raises(DefinitionError, match="not found"):
        load_definition("schema")
    assert definition_source("block:Not_A_Block").kind == "missing"


def test_a_deployment_description_says_where_its_runs_read_the_definition(defs_dir, name):
    from flows.definition_source import deployment_description

    path = defs_dir / f"{name}.json"
    path.write_text(json.dumps(definition(name)))
    text = deployment_description("Scheduled host health check", name)
    assert text.startswith("Scheduled host health check\n\nRuns the definition from the file ")
    assert str(path) in text and f"block:{name}" in text
    assert deployment_description("", f"block:{name}").startswith(
        f"Runs the definition from the Prefect block opsflow-pipeline-definition/{name}"
    )


def test_the_block_constants_are_the_catalogs():
    from flows import catalog, definition_source

    assert catalog.BLOCK_TYPE_SLUG == definition_source.BLOCK_TYPE_SLUG
    assert catalog.BLOCK_TYPE_SLUG == catalog.PipelineDefinitionBlock.get_block_type_slug()
    assert catalog.BLOCK_PREFIX == "block:"


def test_telling_the_source_never_imports_prefect(defs_dir, name):
    """`describe` never imports Prefect, so neither may what it asks."""
    import os
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from flows.definition_source import definition_source\n"
        f"print(definition_source({name!r}).kind, definition_source('block:{name}').kind)\n"
        "assert 'prefect' not in sys.modules, 'prefect was imported'\n"
    )
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api"}  # configured, never reached
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["block", "block"]
