"""Definitions as Prefect blocks, against the session's real Prefect server: publish, UI-style
edits through the API, revisions, refusal of invalid definitions, pull, and the fallback."""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path

import pytest
from pydantic import ValidationError
from support.ports import free_port

from nodes.errors import DefinitionError, OpsflowError

pytestmark = pytest.mark.timeout(240)


def definition(name: str, title: str = "first") -> dict:
    return {
        "name": name,
        "version": "1.0",
        "description": "block test",
        "nodes": [
            {"id": "metrics", "type": "context", "config": {"include": ["memory"]}, "next": "tell"},
            {"id": "tell", "type": "notify", "config": {"driver": "console", "title": title}},
        ],
    }


@pytest.fixture
def defs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "definitions"
    directory.mkdir()
    monkeypatch.setenv("OPSFLOW_DEFINITIONS_DIR", str(directory))
    return directory


@pytest.fixture
def name() -> str:
    return f"blk-{uuid.uuid4().hex[:10]}"


def write(directory: Path, raw: dict) -> Path:
    path = directory / f"{raw['name']}.json"
    path.write_text(json.dumps(raw, indent=2))
    return path


def read_document(name: str):
    from prefect.client.orchestration import get_client

    from flows.catalog import BLOCK_TYPE_SLUG

    with get_client(sync_client=True) as client:
        return client.read_block_document_by_name(name=name, block_type_slug=BLOCK_TYPE_SLUG)


def ui_edit(name: str, change) -> None:
    """Replace the document's data as the UI's edit form does (the whole data, no merge)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import BlockDocumentUpdate

    document = read_document(name)
    data = copy.deepcopy(document.data)
    change(data)
    with get_client(sync_client=True) as client:
        client.update_block_document(
            block_document_id=document.id,
            block_document=BlockDocumentUpdate(data=data, merge_existing_data=False),
        )


def test_block_type_is_registered_with_slug_and_described_fields(prefect_api):
    from prefect.client.orchestration import get_client

    from flows.catalog import PipelineDefinitionBlock

    PipelineDefinitionBlock.register_type_and_schema(_sync=True)
    with get_client(sync_client=True) as client:
        block_type = client.read_block_type_by_slug("opsflow-pipeline-definition")
    assert block_type.name == "opsflow pipeline definition"
    assert "revision" in block_type.description
    fields = PipelineDefinitionBlock.model_json_schema()["properties"]
    assert set(fields) == {"definition", "revision", "digest", "problems"}
    assert all(field.get("description") for field in fields.values())


def test_publish_stores_the_file_definition_as_a_block(prefect_api, defs_dir, name):
    from flows.catalog import load_block_definition, publish
    from flows.definition import load_definition

    raw = definition(name)
    write(defs_dir, raw)
    assert publish(name) == (name, 1)

    document = read_document(name)
    assert document.block_type.slug == "opsflow-pipeline-definition"
    assert document.data["definition"] == raw
    assert document.data["revision"] == 1

    pipeline = load_block_definition(name)
    assert pipeline.name == name
    assert pipeline.source == f"block:{name}@r1"
    assert pipeline.definition_version == load_definition(name).definition_version


def test_publish_by_path_uses_the_definition_name(prefect_api, tmp_path, name):
    from flows.catalog import publish

    path = tmp_path / "somewhere.json"
    path.write_text(json.dumps(definition(name)))
    assert publish(path) == (name, 1)
    assert read_document(name).data["definition"]["name"] == name


def test_revision_bumps_on_changed_publish_not_on_identical_publish(prefect_api, defs_dir, name):
    from flows.catalog import load_block_definition, publish

    write(defs_dir, definition(name))
    assert publish(name) == (name, 1)
    assert publish(name) == (name, 1)
    write(defs_dir, definition(name, title="second"))
    assert publish(name) == (name, 2)
    assert publish(name) == (name, 2)
    assert read_document(name).data["revision"] == 2
    assert load_block_definition(name).source == f"block:{name}@r2"


def test_ui_edit_is_used_with_a_new_hash_and_recorded_as_the_next_revision(prefect_api, defs_dir, name):
    from flows.catalog import load_block_definition, publish

    write(defs_dir, definition(name))
    publish(name)
    before = load_block_definition(name)

    def retitle(data: dict) -> None:
        data["definition"]["nodes"][1]["config"]["title"] = "edited in the UI"

    ui_edit(name, retitle)
    after = load_block_definition(name)
    assert after.nodes["tell"].config["title"] == "edited in the UI"
    assert after.definition_version != before.definition_version
    assert after.source == f"block:{name}@r2"
    assert read_document(name).data["revision"] == 2  # recorded for the runs that follow
    assert load_block_definition(name).source == f"block:{name}@r2"

    # the file is unchanged: publishing it again is a change too, counted once more
    assert publish(name) == (name, 3)
    assert load_block_definition(name).nodes["tell"].config["title"] == "first"


def test_loading_without_record_leaves_the_revision_alone(prefect_api, defs_dir, name):
    from flows.catalog import load_block_definition, publish

    write(defs_dir, definition(name))
    publish(name)
    ui_edit(name, lambda data: data["definition"].update(description="edited"))
    assert load_block_definition(name, record=False).source == f"block:{name}@r2"
    assert read_document(name).data["revision"] == 1


def test_invalid_definition_is_refused_by_the_block_model_with_every_problem(prefect_api, name):
    from flows.catalog import PipelineDefinitionBlock

    bad = definition(name)
    bad["nodes"][0]["type"] = "teleport"
    bad["nodes"][0]["next"] = "nowhere"
    with pytest.raises(ValidationError) as caught:
        PipelineDefinitionBlock(definition=bad)
    message = str(caught.value)
    assert "pipeline definition invalid" in message
    assert "node 'metrics'" in message and "teleport" in message
    assert "'nowhere' is not a node" in message

    block = PipelineDefinitionBlock(definition=definition(name))
    with pytest.raises(ValidationError, match="teleport"):
        block.definition = bad
    assert block.definition == definition(name)


def test_invalid_edit_made_past_the_model_fails_the_load_naming_the_block(prefect_api, defs_dir, name):
    from flows.catalog import load_block_definition, publish

    write(defs_dir, definition(name))
    publish(name)
    ui_edit(name, lambda data: data["definition"]["nodes"][1].update(next="ghost"))
    with pytest.raises(DefinitionError) as caught:
        load_block_definition(name)
    assert caught.value.problems == [
        f"block {name}: node 'tell': next 'ghost' is not a node of this definition"
    ]
    assert read_document(name).data["revision"] == 1  # an unusable edit is not a revision


def test_missing_block_is_none(prefect_api):
    from flows.catalog import load_block_definition

    assert load_block_definition(f"absent-{uuid.uuid4().hex[:8]}") is None
    assert load_block_definition("Not_A_Block_Name") is None


def test_publish_refuses_a_name_prefect_cannot_store(prefect_api, defs_dir):
    from flows.catalog import publish

    raw = definition(f"under_score_{uuid.uuid4().hex[:6]}")
    write(defs_dir, raw)
    with pytest.raises(DefinitionError, match="lowercase letters, numbers and dashes"):
        publish(raw["name"])


def test_pull_writes_the_block_back_and_guards_local_changes(prefect_api, defs_dir, tmp_path, name):
    from flows.catalog import publish, pull

    path = write(defs_dir, definition(name))
    publish(name)
    path.unlink()

    assert pull(name) == path
    assert json.loads(path.read_text()) == definition(name)
    assert path.read_text().endswith("}\n") and '\n  "nodes": [' in path.read_text()

    ui_edit(name, lambda data: data["definition"].update(description="from the UI"))
    with pytest.raises(OpsflowError, match="differs from block") as caught:
        pull(name)
    assert "--force" in str(caught.value)
    assert json.loads(path.read_text())["description"] == "block test"

    assert pull(name, force=True) == path
    assert json.loads(path.read_text())["description"] == "from the UI"

    elsewhere = tmp_path / "out" / "copy.json"
    assert pull(name, elsewhere) == elsewhere
    assert json.loads(elsewhere.read_text())["description"] == "from the UI"


def test_pull_of_a_missing_block_says_so(prefect_api, defs_dir):
    from flows.catalog import pull

    missing = f"absent-{uuid.uuid4().hex[:8]}"
    with pytest.raises(DefinitionError, match=f"not found: block {missing}"):
        pull(missing)


def test_block_is_used_when_asked_or_when_no_file_exists(prefect_api, defs_dir, name):
    from flows.catalog import block_definition_for, publish

    path = write(defs_dir, definition(name))
    publish(name)
    ui_edit(name, lambda data: data["definition"].update(description="from the UI"))

    assert block_definition_for(name) is None  # the file wins
    assert block_definition_for(name, source="file") is None
    assert block_definition_for(str(path)) is None
    assert block_definition_for(name, source="block").description == "from the UI"
    assert block_definition_for(f"block:{name}").description == "from the UI"

    path.unlink()
    assert block_definition_for(name).description == "from the UI"

    missing = f"absent-{uuid.uuid4().hex[:8]}"
    assert block_definition_for(missing) is None  # load_definition then reports "not found"
    with pytest.raises(DefinitionError, match=f"not found: block {missing}"):
        block_definition_for(f"block:{missing}")


def test_no_configured_api_means_no_fallback(defs_dir, monkeypatch, tmp_path):
    from flows.catalog import block_definition_for

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_PROFILES_PATH", str(tmp_path / "no-profiles.toml"))
    assert block_definition_for("anything-at-all") is None


def test_an_async_flow_run_reads_the_edited_block(prefect_api, defs_dir, name):
    """The pipeline flow is async: the block is read with the sync client inside its event loop."""
    from prefect import flow

    from flows.catalog import block_definition_for, publish

    path = write(defs_dir, definition(name))
    publish(name)
    path.unlink()
    ui_edit(name, lambda data: data["definition"]["nodes"][1]["config"].update(title="v2"))

    @flow(persist_result=False)
    async def which_definition(ref: str) -> dict:
        pipeline = block_definition_for(ref)
        return {
            "source": pipeline.source,
            "version": pipeline.definition_version,
            "title": pipeline.nodes["tell"].config["title"],
        }

    seen = asyncio.run(which_definition(name))
    assert seen["source"] == f"block:{name}@r2"
    assert seen["title"] == "v2"
    assert seen["version"].startswith("1.0+")


def test_unreachable_api_is_one_clean_error(prefect_api):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.catalog import load_block_definition

    port = free_port()  # a loopback port nobody listens on
    with temporary_settings({PREFECT_API_URL: f"http://127.0.0.1:{port}/api"}):
        with pytest.raises(OpsflowError, match="Cannot reach the Prefect API") as caught:
            load_block_definition("anything")
    assert not isinstance(caught.value, DefinitionError)


TYPED_SLACK = "https://hooks.slack.com/services/T0BLOCK/B0BLOCK/blockTypedSecret3c4d5e"
TYPED_PAGERDUTY = "R0utingKeyBlock1a2b3c4d5e6f7a8b"


def with_typed_keys(name: str) -> dict:
    raw = definition(name)
    raw["nodes"][1]["config"] = {"driver": "slack", "webhook_url": TYPED_SLACK}
    raw["on_failure"] = [
        {"driver": "slack", "webhook_url": "${secret:ops-slack}"},
        {"driver": "pagerduty", "routing_key": TYPED_PAGERDUTY},
    ]
    return raw


def test_publish_refuses_keys_typed_in_naming_each_field_and_stores_nothing(prefect_api, defs_dir, name):
    from prefect.exceptions import ObjectNotFound

    from flows.catalog import PipelineDefinitionBlock, publish

    write(defs_dir, with_typed_keys(name))
    with pytest.raises(OpsflowError) as caught:
        publish(name)
    message = str(caught.value)
    assert message.startswith(f"Refusing to publish {name}: a key is typed in at ")
    assert "node 'tell' config.webhook_url" in message and "on_failure[1].routing_key" in message
    assert "on_failure[0]" not in message  # a reference is no key
    assert "${secret:NAME}" in message and "\n" not in message
    assert TYPED_SLACK not in message and TYPED_PAGERDUTY not in message and "T0BLOCK" not in message
    with pytest.raises(ObjectNotFound):
        read_document(name)
    with pytest.raises(ValidationError, match="node 'tell' config.webhook_url"):
        PipelineDefinitionBlock(definition=with_typed_keys(name))


def test_publish_keeps_references_to_secret_blocks(prefect_api, defs_dir, name):
    from flows.catalog import publish

    raw = with_typed_keys(name)
    raw["nodes"][1]["config"]["webhook_url"] = "${SLACK_WEBHOOK_URL}"
    raw["on_failure"][1]["routing_key"] = "${secret:ops-pagerduty}"
    write(defs_dir, raw)
    assert publish(name) == (name, 1)
    stored = read_document(name).data["definition"]
    assert stored["on_failure"][1]["routing_key"] == "${secret:ops-pagerduty}"
    assert stored["nodes"][1]["config"]["webhook_url"] == "${SLACK_WEBHOOK_URL}"
