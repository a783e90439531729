"""Pipeline definitions kept as Prefect block documents, so they can be edited in the Prefect UI.

Files in `definitions/` stay the source of truth for what ships; `publish` copies one
into a block, `pull` writes a block back to a file. A run uses the block when asked
for it (`block:NAME`, or `source="block"`) or when no file of that name exists.

Every change of a block's definition gets a new revision: `publish` counts it, and an
edit made elsewhere (the UI, the API) is noticed by comparing the content with the
`digest` recorded for the current revision, then recorded as the next revision by
whoever reads the block next: a run, `pull`, or `pipeline serve`'s watcher
(flows.catalog_watch), which checks every save as it happens. The definition's JSON
Schema is the `definition` field's schema, so the UI's form is built from it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from prefect.blocks.core import Block
from pydantic import ConfigDict, Field, field_validator
from pydantic.json_schema import GenerateJsonSchema

from flows.catalog_schema import with_definition_schema
from flows.definition import (
    Pipeline,
    canonical_hash,
    definitions_dir,
    load_definition,
)
from flows.definition import (
    validate as validate_definition,
)
from flows.definition_source import BLOCK_NAME, BLOCK_PREFIX, BLOCK_TYPE_SLUG
from flows.prefect_api import sync_client
from flows.typed_keys import typed_in_keys
from nodes.errors import DefinitionError, OpsflowError

__all__ = [
    "BLOCK_PREFIX",
    "BLOCK_TYPE_SLUG",
    "Checked",
    "PipelineDefinitionBlock",
    "announce",
    "block_definition_for",
    "check_document",
    "load_block_definition",
    "publish",
    "pull",
]

# JSON Schema's own mark for a value the form should not edit (Prefect 3.8.8's UIs ignore it)
READ_ONLY: dict[str, Any] = {"readOnly": True}


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
        "Edit the `definition`; every change becomes a new revision, and each run records the "
        "revision and content hash it ran. Runs use this block when no definitions/NAME.json "
        "exists, or when they ask for block:NAME. While `pipeline serve` runs, each save is "
        "checked at once: its revision and digest are recorded and any problem is listed under "
        "Problems. `pipeline pull NAME` writes it back to a file."
    )

    model_config = ConfigDict(validate_assignment=True)

    definition: dict[str, Any] = Field(
        description='The pipeline definition JSON (`"version": "1.0"`, `nodes`, ...).'
    )
    revision: int = Field(
        default=1,
        ge=1,
        description="Set by opsflow, do not edit: the definition's revision, counted up on every change.",
        json_schema_extra=READ_ONLY,
    )
    digest: str | None = Field(
        default=None,
        description="Set by opsflow, do not edit: the content hash of the definition at this revision.",
        json_schema_extra=READ_ONLY,
    )
    problems: list[str] = Field(
        default_factory=list,
        description=(
            "Set by opsflow, do not edit: what is wrong with the definition as saved, every "
            "problem naming its node (empty when valid). Runs refuse an invalid definition."
        ),
        json_schema_extra=READ_ONLY,
    )

    @classmethod
    def model_json_schema(  # type: ignore[override]  # Block's own signature, narrower than pydantic's
        cls,
        by_alias: bool = True,
        ref_template: str = "#/definitions/{model}",
        schema_generator: type[GenerateJsonSchema] = GenerateJsonSchema,
        mode: Literal["validation", "serialization"] = "validation",
    ) -> dict[str, Any]:
        """The block schema, with the definition JSON Schema as the `definition` field's own:
        the UI builds its form from it, and `/ui/schemas/validate` checks a value against it."""
        schema = super().model_json_schema(by_alias, ref_template, schema_generator, mode)
        return with_definition_schema(schema, "definition")

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
            if recorded and not document.data.get("problems") and _schema_is_current(document):
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
    pipeline = load_block_definition(name)
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
    carries the content hash). When `record` is true, what the check found is written
    back (see check_document): a change not yet counted (an edit in the UI) becomes the
    next revision, an invalid definition gets its problems listed on the block.
    """
    if not BLOCK_NAME.match(name):
        return None
    with sync_client() as client:
        document = _read_document(client, name)
        if document is None:
            return None
        checked = check_document(document)
        if record and checked.update:
            from prefect.client.schemas.actions import BlockDocumentUpdate

            client.update_block_document(
                block_document_id=document.id,
                block_document=BlockDocumentUpdate(data=checked.update, merge_existing_data=True),
            )
            announce(document, checked)
    if checked.pipeline is None:
        raise DefinitionError([f"block {name}: {p}" for p in checked.problems])
    return checked.pipeline


@dataclass(frozen=True)
class Checked:
    """A definition block document as checked: its pipeline (None when invalid), revision,
    every problem, and `update`, the data to merge into the document so it says so
    (empty when it already does)."""

    name: str
    pipeline: Pipeline | None
    revision: int
    digest: str | None
    problems: list[str] = field(default_factory=list)
    update: dict[str, Any] = field(default_factory=dict)


def check_document(document: Any, *, floor: int = 0) -> Checked:
    """Validate what block `document` holds and work out its revision and digest.

    Only `revision`, `digest` and `problems` are ever written back (merged), so a
    concurrent edit of the definition is never overwritten. An invalid definition is no
    revision: the last valid one's digest stays, and the fixed content counts as the next.
    `floor` is the highest revision already recorded for this document: a form opened
    before it and saved later posts its older revision back, and that is no step back.
    """
    name = str(document.name)
    data = document.data or {}
    raw = _definition_of(data)
    revision, recorded = _current_revision(data, floor)
    pipeline = None
    if raw is None:
        problems = ["`definition` must be a JSON object"]
    else:
        try:
            pipeline = validate_definition(raw, source=f"{BLOCK_PREFIX}{name}@r{revision}", name=name)
            problems = []
        except DefinitionError as exc:
            problems = list(exc.problems)
    update: dict[str, Any] = {}
    digest = data.get("digest")
    if pipeline is not None and raw is not None and not recorded:
        digest = canonical_hash(raw)
        update.update(revision=revision, digest=digest)
    if (data.get("problems") or []) != problems:
        update["problems"] = problems
    return Checked(name, pipeline, revision, digest, problems, update)


def announce(document: Any, checked: Checked) -> None:
    """An event for what a check recorded: `opsflow.definition.revised` (a new revision) or
    `opsflow.definition.invalid` (with every problem), about the block document, by name."""
    from prefect.events import emit_event

    if "revision" not in checked.update and "problems" not in checked.update:
        return
    if checked.pipeline is None:
        event, payload = "opsflow.definition.invalid", {"problems": checked.problems}
    elif "revision" in checked.update:
        event, payload = "opsflow.definition.revised", {}
    else:
        return  # only the list of problems was emptied: the revision was recorded before
    emit_event(
        event=event,
        resource={
            "prefect.resource.id": f"prefect.block-document.{document.id}",
            "prefect.resource.name": checked.name,
            "opsflow.definition": checked.name,
        },
        payload={"revision": checked.revision, "digest": checked.digest, **payload},
    )


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


def _current_revision(data: dict[str, Any], floor: int = 0) -> tuple[int, bool]:
    """(revision of the content the block holds now, whether that revision is recorded).

    A digest that differs from the content means it changed since the revision was
    counted: it is the next revision. A missing digest (a block made in the UI) means
    the stored revision was never counted for any content: it is this content's. A
    stored revision below `floor` was posted back by a stale form: the content is new.
    """
    stored = data.get("revision")
    revision = stored if isinstance(stored, int) and not isinstance(stored, bool) and stored >= 1 else 1
    if revision < floor:
        return floor + 1, False
    raw = _definition_of(data)
    digest = data.get("digest")
    if raw is None or digest == canonical_hash(raw):
        return revision, True
    if digest is None:
        return revision, False
    return revision + 1, False


def _schema_is_current(document: Any) -> bool:
    """Whether the document uses this model's block schema (the form the UI builds for it)."""
    schema = getattr(document, "block_schema", None)
    return schema is not None and schema.checksum == PipelineDefinitionBlock._calculate_schema_checksum()


def _read_document(client: Any, name: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    try:
        return client.read_block_document_by_name(name=name, block_type_slug=BLOCK_TYPE_SLUG)
    except ObjectNotFound:
        return None
