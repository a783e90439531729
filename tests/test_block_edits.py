"""Definition blocks as the Prefect UI edits them, against the session's real Prefect server.

The block schema read back from the API carries the definition JSON Schema (the UI builds
its form from it, and the server's `/ui/schemas/validate` refuses a wrong structure with it);
`revision`, `digest` and `problems` are marked read-only. Prefect 3.8.8's forms send a save
without checking it and post back the revision and digest they were opened with, so
`pipeline serve`'s watcher (flows.catalog_watch) checks each save: here it runs in a thread
while documents are PATCHed with their whole data, as the UI's edit form does.
"""

from __future__ import annotations

import asyncio
import copy
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from support.waiting import wait_for

pytestmark = pytest.mark.timeout(240)


def definition(name: str, title: str = "first") -> dict:
    return {
        "name": name,
        "version": "1.0",
        "description": "block edit test",
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
    return f"edit-{uuid.uuid4().hex[:10]}"


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def read_document(name: str):
    from flows.catalog import BLOCK_TYPE_SLUG

    with client() as prefect:
        return prefect.read_block_document_by_name(name=name, block_type_slug=BLOCK_TYPE_SLUG)


def ui_save(name: str, change) -> None:
    """PATCH the document's whole data, as the UI's edit form does (stale revision and digest too)."""
    from prefect.client.schemas.actions import BlockDocumentUpdate

    document = read_document(name)
    data = copy.deepcopy(document.data)
    change(data)
    with client() as prefect:
        prefect.update_block_document(
            block_document_id=document.id,
            block_document=BlockDocumentUpdate(data=data, merge_existing_data=False),
        )


def published(defs_dir: Path, name: str, raw: dict | None = None) -> None:
    from flows.catalog import publish

    (defs_dir / f"{name}.json").write_text(json.dumps(raw or definition(name)))
    publish(name)
    (defs_dir / f"{name}.json").unlink()


@contextmanager
def watcher() -> Iterator[object]:
    """flows.catalog_watch in its own event loop and thread, connected and caught up."""
    from flows.catalog_watch import DefinitionBlockWatch
    from flows.history import flush_client_queues

    watch = DefinitionBlockWatch()
    loop = asyncio.new_event_loop()
    task: list[asyncio.Task] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        task.append(loop.create_task(watch.run_forever(retry_seconds=1)))
        try:
            loop.run_until_complete(task[0])
        except asyncio.CancelledError:
            pass
        finally:
            loop.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: task and watch.connected.is_set(), 60, "the watcher to subscribe and catch up")
        yield watch
    finally:
        loop.call_soon_threadsafe(task[0].cancel)
        thread.join(timeout=30)
        flush_client_queues()
    assert not thread.is_alive(), "the watcher did not stop"


def recorded(name: str, revision: int):
    def check():
        data = read_document(name).data
        return data if data.get("revision") == revision else None

    return wait_for(check, 30, f"block {name} to be recorded as revision {revision}")


def events_about(document_id, event: str, count: int) -> list:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from flows.history import flush_client_queues

    flush_client_queues()
    wanted = EventFilter(
        event=EventNameFilter(name=[event]),
        resource=EventResourceFilter(id=[f"prefect.block-document.{document_id}"]),
    )

    def read():
        with client() as prefect:
            found = prefect.read_events(filter=wanted, limit=50).events
        return found if len(found) >= count else None

    return wait_for(read, 30, f"{count} {event} event(s)")


def test_the_block_schema_read_back_carries_the_definition_schema_and_read_only_fields(
    prefect_api, defs_dir, name
):
    published(defs_dir, name)
    fields = read_document(name).block_schema.fields
    field = fields["properties"]["definition"]
    assert field["title"] == "Definition" and field["required"] == ["version", "nodes"]
    assert field["properties"]["version"]["const"] == "1.0"
    assert field["properties"]["nodes"]["items"] == {"$ref": "#/definitions/Node"}
    assert "teleport" not in fields["definitions"]["Node"]["properties"]["type"]["enum"]
    assert "notify" in fields["definitions"]["Node"]["properties"]["type"]["enum"]
    assert fields["definitions"]["Node"]["additionalProperties"] is False  # kept past Prefect's rewriting
    refs = {v for v in json.dumps(fields).split('"') if v.startswith("#/")}
    assert refs and all(
        r.startswith("#/definitions/") and r.split("/")[-1] in fields["definitions"] for r in refs
    )
    for read_only in ("revision", "digest", "problems"):
        assert fields["properties"][read_only]["readOnly"] is True
        assert fields["properties"][read_only]["description"].startswith("Set by opsflow, do not edit")


def test_the_servers_schema_check_refuses_a_wrong_structure_naming_each_place(prefect_api, defs_dir, name):
    published(defs_dir, name)
    document = read_document(name)

    def validate(data: dict) -> dict:
        answer = httpx.post(
            f"{prefect_api}/ui/schemas/validate",
            json={"schema": document.block_schema.fields, "values": data},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        return answer.json()

    assert validate(document.data) == {"errors": [], "valid": True}
    bad = copy.deepcopy(document.data)
    bad["definition"]["version"] = "2.0"
    bad["definition"]["nodes"][0]["type"] = "teleport"
    bad["definition"]["nodes"][1]["config"]["chanel"] = "#typo"  # not a console driver setting
    del bad["definition"]["nodes"][1]["id"]
    answer = validate(bad)
    assert answer["valid"] is False
    text = json.dumps(answer)
    for expected in (
        "'1.0' was expected",
        "'teleport' is not one of",
        "'chanel' was unexpected",
        "'id' is a",
    ):
        assert expected in text


def test_a_ui_save_is_recorded_as_the_next_revision_and_pull_uses_it(prefect_api, defs_dir, name):
    from flows.catalog import pull
    from flows.definition import canonical_hash

    published(defs_dir, name)
    with watcher():
        ui_save(name, lambda data: data["definition"]["nodes"][1]["config"].update(title="edited in the UI"))
        data = recorded(name, 2)
    assert data["digest"] == canonical_hash(data["definition"]) and data["problems"] == []
    document = read_document(name)
    [event] = events_about(document.id, "opsflow.definition.revised", 1)
    assert event.resource.name == name and event.payload["revision"] == 2

    path = pull(name)
    assert json.loads(path.read_text())["nodes"][1]["config"]["title"] == "edited in the UI"
    assert read_document(name).data["revision"] == 2  # pulling the recorded revision changes nothing


def test_an_invalid_save_is_reported_on_the_block_and_as_an_event_then_its_fix_counts(
    prefect_api, defs_dir, name
):
    from flows.catalog import load_block_definition
    from nodes.errors import DefinitionError

    published(defs_dir, name)

    def break_it(data: dict) -> None:
        data["definition"]["nodes"][1]["next"] = "ghost"
        data["definition"]["nodes"][0]["type"] = "teleport"

    with watcher():
        ui_save(name, break_it)
        data = wait_for(lambda: read_document(name).data.get("problems"), 30, "the problems on the block")
        assert len(data) == 2 and data[0].startswith("node 'metrics': unknown node type 'teleport' (known: ")
        assert data[1] == "node 'tell': next 'ghost' is not a node of this definition"
        assert read_document(name).data["revision"] == 1  # an unusable edit is no revision
        with pytest.raises(DefinitionError) as caught:
            load_block_definition(name)
        assert [p.removeprefix(f"block {name}: ") for p in caught.value.problems] == data

        ui_save(name, lambda d: d["definition"].update(nodes=definition(name, "fixed")["nodes"]))
        fixed = recorded(name, 2)
    assert fixed["problems"] == []
    [invalid] = events_about(read_document(name).id, "opsflow.definition.invalid", 1)
    assert invalid.resource.name == name and invalid.payload["problems"] == data


def test_a_stale_form_saving_an_older_revision_is_still_the_next_one(prefect_api, defs_dir, name):
    from flows.definition import canonical_hash

    published(defs_dir, name)
    opened = copy.deepcopy(read_document(name).data)  # a form opened at revision 1
    with watcher():
        ui_save(name, lambda data: data["definition"].update(description="second"))
        recorded(name, 2)

        def from_the_stale_form(data: dict) -> None:
            data.clear()
            data.update(copy.deepcopy(opened))
            data["definition"]["description"] = "third, from a form opened at revision 1"

        ui_save(name, from_the_stale_form)
        data = recorded(name, 3)
    assert data["digest"] == canonical_hash(data["definition"])
    assert data["definition"]["description"].startswith("third")


def test_the_watcher_catches_up_and_moves_documents_to_the_current_block_schema(prefect_api, defs_dir, name):
    from prefect.client.schemas.actions import BlockDocumentCreate, BlockSchemaCreate

    from flows.catalog import BLOCK_TYPE_SLUG, PipelineDefinitionBlock

    PipelineDefinitionBlock.register_type_and_schema(_sync=True)
    with client() as prefect:
        block_type = prefect.read_block_type_by_slug(BLOCK_TYPE_SLUG)
        old = prefect.create_block_schema(  # a schema as opsflow published it before this one
            BlockSchemaCreate(
                fields={"title": "old", "type": "object", "properties": {"definition": {"type": "object"}}},
                block_type_id=block_type.id,
                capabilities=[],
                version=f"old-{uuid.uuid4().hex[:6]}",
            )
        )
        prefect.create_block_document(  # made in the UI while nothing watched: no revision counted
            BlockDocumentCreate(
                name=name,
                data={"definition": definition(name)},
                block_schema_id=old.id,
                block_type_id=block_type.id,
            )
        )
    with watcher():
        data = recorded(name, 1)
        document = wait_for(
            lambda: (
                (d := read_document(name)).block_schema_id == PipelineDefinitionBlock._block_schema_id and d
            ),
            30,
            "the document to move to the current block schema",
        )
    assert data["digest"] and not data.get("problems")
    assert "Node" in document.block_schema.fields["definitions"]


def test_publishing_the_same_content_moves_an_old_document_to_the_current_schema(prefect_api, defs_dir, name):
    from prefect.client.schemas.actions import BlockDocumentUpdate, BlockSchemaCreate

    from flows.catalog import PipelineDefinitionBlock, publish

    (defs_dir / f"{name}.json").write_text(json.dumps(definition(name)))
    assert publish(name) == (name, 1)
    document = read_document(name)
    with client() as prefect:
        old = prefect.create_block_schema(
            BlockSchemaCreate(
                fields={"title": "old", "type": "object", "properties": {"definition": {"type": "object"}}},
                block_type_id=document.block_type_id,
                capabilities=[],
                version=f"old-{uuid.uuid4().hex[:6]}",
            )
        )
        prefect.update_block_document(document.id, BlockDocumentUpdate(block_schema_id=old.id, data={}))
    assert read_document(name).block_schema_id == old.id
    assert publish(name) == (name, 1)
    assert read_document(name).block_schema_id == PipelineDefinitionBlock._block_schema_id


def doc(data: dict, name: str = "unit") -> SimpleNamespace:
    return SimpleNamespace(name=name, data=data, id=uuid.uuid4())


def test_check_document_counts_revisions_from_the_content_alone():
    from flows.catalog import check_document
    from flows.definition import canonical_hash

    raw = definition("unit")
    digest = canonical_hash(raw)
    same = check_document(doc({"definition": raw, "revision": 4, "digest": digest, "problems": []}))
    assert (same.revision, same.update, same.pipeline.source) == (4, {}, "block:unit@r4")

    made_in_ui = check_document(doc({"definition": raw, "revision": 1}))  # no digest: this content's
    assert made_in_ui.update == {"revision": 1, "digest": digest}

    edited = check_document(doc({"definition": {**raw, "description": "x"}, "revision": 4, "digest": digest}))
    assert edited.revision == 5 and edited.update["revision"] == 5

    stale = check_document(doc({"definition": raw, "revision": 4, "digest": digest}), floor=6)
    assert stale.revision == 7 and stale.update["digest"] == digest

    missing = check_document(doc({"revision": 2, "digest": digest}))
    assert missing.pipeline is None and missing.problems == ["`definition` must be a JSON object"]
    assert missing.update == {"problems": missing.problems}  # the revision and digest stay
