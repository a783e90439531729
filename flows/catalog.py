"""Pipeline definitions kept as Prefect block documents, so they can be edited in the Prefect UI.

Files in `definitions/` stay the source of truth for what ships; `publish` copies one
into a block, `pull` writes a block back to a file. A run uses the block when asked
for it (`block:NAME`, or `source="block"`) or when no file of that name exists.

Every change of a block's definition gets a new revision: `publish` counts it, and an
edit made elsewhere (the UI, the API) is noticed by comparing the content with the
`digest` recorded for the current revision, then recorded as the next revision.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, field_validator

from flows.definition import (
    Pipeline,
    canonical_hash,
    definitions_dir,
    load_definition,
)
from flows.definition import (
    validate as validate_definition,
)
from flows.prefect_api import sync_client
from flows.typed_keys import typed_in_keys
from nodes.errors import DefinitionError, OpsflowError

__all__ = [
    "BLOCK_PREFIX",
    "BLOCK_TYPE_SLUG",
    "PipelineDefinitionBlock",
    "block_definition_for",
    "load_block_definition",
    "publish",
    "pull",
]

BLOCK_TYPE_SLUG = "opsflow-pipeline-definition"
# `load_definition("block:NAME")` asks for the block explicitly (names never hold a colon)
BLOCK_PREFIX = "block:"
BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")


class PipelineDefinitionBlock(Block):
    """An opsflow pipeline definition (the JSON of a `definitions/*.json` file).

    The whole definition is validated whenever the block is built or changed through
    this model, so an invalid definition cannot be saved with it, nor one with a key typed
    in as text (a block document is plain JSON: keys are referenced, `${secret:NAME}`).
    The next flow run of the definition's name uses what is saved here when no file of
    that name exists, or when the run asks for the block (`block:NAME`).
    """

    _block_type_name = "opsflow pipeline definition"
    _block_type_slug = BLOCK_TYPE_SLUG
    _description = (
        "An opsflow pipeline definition (alert -> host context -> AI analysis -> notification). "
        "Edit the `definition` JSON; every change becomes a new revision, and each run records "
        "the revision and content hash it ran. `pipeline pull NAME` writes it back to a file."
    )

    model_config = ConfigDict(validate_assignment=True)

    definition: dict[str, Any] = Field(
        description='The pipeline definition JSON (`"version": "1.0"`, `nodes`, ...).'
    )
    revision: int = Field(
        default=1, ge=1, description="Revision of the definition; opsflow counts it up on every change."
    )
    digest: str | None = Field(
        default=None,
        description="Content hash of the definition at this revision; maintained by opsflow.",
    )

    @field_validator("definition")
    @classmethod
    def _valid_definition(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            validate_definition(value, source="block")
        except DefinitionError as exc:
            problems = "\n".join(f"  - {p}" for p in exc.problems)
            raise ValueError(f"pipeline definition invalid:\n{problems}") from None
        typed = typed_in_keys(value)
        if typed:  # a block document is stored as plain JSON: a key in it is readable by all
            raise ValueError(_typed_message("this definition", typed))
        return value


def publish(ref: str | Path) -> tuple[str, int]:
    """Store the file definition `ref` (name or path) as the block of its name.

    Returns (name, revision). Publishing the content the block already holds keeps its
    revision, so publishing every shipped definition on each deploy is harmless.
    """
    pipeline = load_definition(ref)
    name = pipeline.name
    _check_block_name(name)
    typed = typed_in_keys(pipeline.raw)
    if typed:
        raise OpsflowError(_typed_message(name, typed))
    digest = canonical_hash(pipeline.raw)
    with sync_client() as client:
        document = _read_document(client, name)
    if document is None:
        revision = 1
    else:
        current, recorded = _current_revision(document.data)
        if _definition_of(document.data) == pipeline.raw:
            if recorded:
                return name, current
            revision = current
        else:
            revision = current + 1
    block = PipelineDefinitionBlock(definition=pipeline.raw, revision=revision, digest=digest)
    with sync_client():
        block.save(name, overwrite=True, _sync=True)  # type: ignore[call-arg]  # prefect's @async_dispatch takes _sync at run time
    return name, revision


def pull(name: str, path: Path | None = None, *, force: bool = False) -> Path:
    """Write block `name`'s definition to `path` (default `definitions/<name>.json`).

    A file with other content is only replaced with `force`: files are what ships,
    so a UI edit must not silently overwrite local work. A file with the same JSON is
    left as it is.
    """
    pipeline = load_block_definition(name, record=False)
    if pipeline is None:
        raise DefinitionError(f"Pipeline definition not found: block {name}")
    target = path or definitions_dir() / f"{name}.json"
    text = json.dumps(pipeline.raw, indent=2, ensure_ascii=False) + "\n"
    if target.exists() and not force:
        try:
            same = json.loads(target.read_text(encoding="utf-8")) == pipeline.raw
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            same = False
        if same:
            return target
        raise OpsflowError(
            f"{target} differs from block {name} ({pipeline.source}); use --force to overwrite it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    partial.replace(target)
    return target


def load_block_definition(name: str, *, record: bool = True) -> Pipeline | None:
    """Block `name`'s definition, validated; None when there is no such block.

    The Pipeline's `source` is `block:<name>@r<revision>` (its `definition_version`
    carries the content hash). A content change not yet counted (an edit in the UI) is
    recorded as the next revision when `record` is true; only the revision and digest
    are written, so a concurrent edit of the definition is never overwritten.
    """
    if not BLOCK_NAME.match(name):
        return None
    with sync_client() as client:
        document = _read_document(client, name)
        if document is None:
            return None
        raw = _definition_of(document.data)
        if raw is None:
            raise DefinitionError(f"block {name}: `definition` must be a JSON object")
        revision, recorded = _current_revision(document.data)
        try:
            pipeline = validate_definition(raw, source=f"{BLOCK_PREFIX}{name}@r{revision}", name=name)
        except DefinitionError as exc:
            raise DefinitionError([f"block {name}: {p}" for p in exc.problems]) from None
        if record and not recorded:
            from prefect.client.schemas.actions import BlockDocumentUpdate

            client.update_block_document(
                block_document_id=document.id,
                block_document=BlockDocumentUpdate(
                    data={"revision": revision, "digest": canonical_hash(raw)},
                    merge_existing_data=True,
                ),
            )
    return pipeline


def block_definition_for(ref: str, *, source: Literal["auto", "file", "block"] = "auto") -> Pipeline | None:
    """The block definition a run of `ref` should use instead of a file, or None for the file.

    `block:NAME` or `source="block"`: the block, which must exist. `source="auto"`:
    the block only when `ref` is a name with no file in `definitions_dir()` and a
    Prefect API is configured (a missing definition never boots a server to say so).
    """
    explicit = ref.startswith(BLOCK_PREFIX)
    name = ref.removeprefix(BLOCK_PREFIX)
    if not explicit:
        if source == "file" or ref.endswith(".json") or "/" in ref or os.sep in ref:
            return None
        if source == "auto" and (definitions_dir() / f"{ref}.json").is_file():
            return None
        if source == "auto":
            from flows.local_server import configured_api_url

            if not configured_api_url():
                return None
    try:
        pipeline = load_block_definition(name)
    except DefinitionError:
        raise
    except OpsflowError as exc:
        if explicit or source == "block":
            raise
        # a name with no file: the answer is still "not found", with why blocks were not checked
        raise DefinitionError(
            f"Pipeline definition not found: {name} (no {definitions_dir() / f'{name}.json'}; "
            f"Prefect definition blocks were not checked: {exc})"
        ) from None
    if pipeline is None and (explicit or source == "block"):
        raise DefinitionError(f"Pipeline definition not found: block {name}")
    return pipeline


def _typed_message(name: str, places: list[str]) -> str:
    return (
        f"Refusing to publish {name}: a key is typed in at {', '.join(places)}, and a block would "
        "store it in clear; reference it instead: ${NAME} (environment) or ${secret:NAME} "
        "(a Prefect Secret block)"
    )


def _check_block_name(name: str) -> None:
    if not BLOCK_NAME.match(name):
        raise DefinitionError(
            f"definition name {name!r} cannot name a Prefect block: "
            "use lowercase letters, numbers and dashes only"
        )


def _definition_of(data: dict[str, Any]) -> dict[str, Any] | None:
    value = data.get("definition")
    return value if isinstance(value, dict) else None


def _current_revision(data: dict[str, Any]) -> tuple[int, bool]:
    """(revision of the content the block holds now, whether that revision is recorded).

    A digest that differs from the content means it changed since the revision was
    counted: it is the next revision. A missing digest (a block made in the UI) means
    the stored revision was never counted for any content: it is this content's.
    """
    stored = data.get("revision")
    revision = stored if isinstance(stored, int) and stored >= 1 else 1
    raw = _definition_of(data)
    digest = data.get("digest")
    if raw is None or digest == canonical_hash(raw):
        return revision, True
    if digest is None:
        return revision, False
    return revision + 1, False


def _read_document(client: Any, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_block_document_by_name(name=name, block_type_slug=BLOCK_TYPE_SLUG)
    except ObjectNotFound:
        return None
