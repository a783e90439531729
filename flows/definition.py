"""Pipeline definitions: the pydantic model, loading (name, path or dict) and graph validation.

Validation reports every problem at once, each naming its node, so a definition can
be fixed in one pass. Nothing here reads `${...}` values or imports Prefect.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

from flows.definition_json import parse_json, read_json
from flows.limits import MAX_DEFINITION_BYTES
from flows.parameters import Parameter, ParameterName
from flows.triggers import Trigger
from nodes import NODE_TYPES
from nodes.errors import DefinitionError
from nodes.templating import has_dynamic, referenced_names

__all__ = [
    "Defaults",
    "Definition",
    "Node",
    "Pipeline",
    "definition_directory",
    "definitions_dir",
    "list_definitions",
    "load_definition",
]

SCHEMA_VERSION: Final = "1.0"
ID_PATTERN = r"^[a-z0-9_-]+$"
_HERE = Path(__file__).resolve().parent
# a checkout (or an editable install) has definitions/ beside the packages; an installed
# wheel carries them inside this package (pyproject: force-include into flows/shipped/)
SHIPPED = _HERE / "shipped"
PROJECT_DEFINITIONS = next(
    (d for d in (_HERE.parent / "definitions", SHIPPED / "definitions") if d.is_dir()),
    _HERE.parent / "definitions",
)


class Defaults(BaseModel):
    """Run options every node inherits unless it sets its own."""

    model_config = ConfigDict(extra="forbid", strict=True)  # "3" is a mistake, not a number

    max_retries: int = Field(default=0, ge=0, le=20, description="Retries after a retryable failure.")
    retry_delay_seconds: float = Field(
        default=2.0,
        ge=0,
        le=3600,
        description="Delay before the first retry; doubles each retry, with jitter.",
    )
    timeout_seconds: float = Field(
        default=300.0, gt=0, le=86400, description="A node attempt running longer than this fails."
    )


class Node(BaseModel):
    """One step of the pipeline; `config` is validated by the node type's own model."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=ID_PATTERN, description="Unique id, `[a-z0-9_-]+`.")
    type: str = Field(description=f"Node type: one of {', '.join(NODE_TYPES)}.")
    description: str | None = Field(default=None, description="What the node is for.")
    config: dict[str, Any] = Field(default_factory=dict, description="The node type's settings.")
    next: str | list[str] | None = Field(default=None, description="Node id(s) that follow; absent = end.")
    # strict: "yes" or "3" is a mistake to report, not a value to coerce
    required: bool = Field(
        default=True, strict=True, description="A failure of a required node fails the run."
    )
    retries: int | None = Field(
        default=None, ge=0, le=20, strict=True, description="Overrides defaults.max_retries."
    )
    retry_delay_seconds: float | None = Field(
        default=None, ge=0, le=3600, strict=True, description="Overrides defaults.retry_delay_seconds."
    )
    timeout_seconds: float | None = Field(
        default=None, gt=0, le=86400, strict=True, description="Overrides defaults.timeout_seconds."
    )
    skip_if_errors: list[str] = Field(
        default_factory=list, description="Skip this node when any of these upstream nodes failed."
    )
    when: str | None = Field(
        default=None, description="JMESPath over the run context; the node is skipped when it is falsy."
    )
    # not the definition's own `on_failure` (notify configs sent when any run fails): node ids
    on_failure: list[str] = Field(
        default_factory=list,
        description="Compensation nodes (ids) that undo this node: run, in reverse completion order, "
        "only when the run fails after this node completed.",
    )

    def next_ids(self) -> list[str]:
        if self.next is None:
            return []
        return [self.next] if isinstance(self.next, str) else list(self.next)


class Definition(BaseModel):
    """A pipeline definition file (`"version": "1.0"`)."""

    model_config = ConfigDict(extra="forbid", title="opsflow pipeline definition")

    name: str | None = Field(default=None, pattern=ID_PATTERN, description="Defaults to the file's stem.")
    version: Literal["1.0"] = Field(description="Schema version of the definition format.")
    description: str = Field(default="", description="What the pipeline is for.")
    defaults: Defaults = Field(default_factory=Defaults, description="Options every node inherits.")
    nodes: list[Node] = Field(min_length=1, description="The steps; the first is the entry.")
    on_start: list[dict[str, Any]] = Field(
        default_factory=list, description="Notify configs sent when a run starts."
    )
    on_success: list[dict[str, Any]] = Field(
        default_factory=list, description="Notify configs sent when a run completes (also partial)."
    )
    on_failure: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Notify configs sent when a run fails or crashes (a node's own `on_failure` names "
        "compensation nodes instead).",
    )
    parameters: dict[ParameterName, Parameter] = Field(
        default_factory=dict,
        description="Typed inputs, read from the payload before any node runs; `params.<name>` in templates.",
    )
    triggers: list[Trigger] = Field(
        default_factory=list,
        description="What starts runs besides a person: cron, interval_seconds, an event, the webhook.",
    )

    def policies(self) -> dict[str, list[dict[str, Any]]]:
        return {"on_start": self.on_start, "on_success": self.on_success, "on_failure": self.on_failure}


@dataclass
class Pipeline:
    """A validated definition with its graph worked out, ready to run or render."""

    definition: Definition
    name: str
    definition_version: str
    source: str
    raw: dict[str, Any]
    successors: dict[str, list[str]] = field(default_factory=dict)
    predecessors: dict[str, list[str]] = field(default_factory=dict)

    @cached_property
    def nodes(self) -> dict[str, Node]:
        return {node.id: node for node in self.definition.nodes}

    @cached_property
    def compensations(self) -> dict[str, str]:
        """Each compensation node and the node it undoes (the one naming it in `on_failure`)."""
        return {comp: node.id for node in self.definition.nodes for comp in node.on_failure}

    @property
    def entry(self) -> str:
        return self.definition.nodes[0].id

    @property
    def description(self) -> str:
        return self.definition.description

    @property
    def directory(self) -> str:
        """Where the definition's relative paths start (a command's `cwd`, its schema files): the
        file's directory, or the working directory for an inline or block definition."""
        return definition_directory(self.source) or os.getcwd()

    @cached_property
    def dynamic(self) -> dict[str, bool]:
        """Which nodes' configs hold templates or references (the others skip resolution)."""
        return {node.id: has_dynamic(node.config) for node in self.definition.nodes}

    @cached_property
    def settings(self) -> list[str]:
        """Every environment variable (or `secret:NAME` block) the nodes' configs refer to."""
        names: list[str] = []
        for node in self.definition.nodes:
            names.extend(n for n in referenced_names(node.config) if n not in names)
        return names

    def configured(self) -> dict[str, bool]:
        """Which referenced environment variables are set now (names only)."""
        return {name: bool(os.environ.get(name)) for name in self.settings if not name.startswith("secret:")}

    def options(self, node: Node) -> dict[str, float]:
        defaults = self.definition.defaults
        return {
            "retries": defaults.max_retries if node.retries is None else node.retries,
            "retry_delay_seconds": (
                defaults.retry_delay_seconds if node.retry_delay_seconds is None else node.retry_delay_seconds
            ),
            "timeout_seconds": defaults.timeout_seconds
            if node.timeout_seconds is None
            else node.timeout_seconds,
        }

    def ancestors(self, node_id: str) -> set[str]:
        return _closure(self.predecessors, node_id)

    def descendants(self, node_id: str) -> set[str]:
        return _closure(self.successors, node_id)


def _closure(edges: dict[str, list[str]], node_id: str) -> set[str]:
    """Every node reached from `node_id` over `edges` (not itself, unless on a cycle)."""
    seen: set[str] = set()
    stack = list(edges.get(node_id, []))
    while stack:
        current = stack.pop()
        if current not in seen:
            seen.add(current)
            stack.extend(edges.get(current, []))
    return seen


def definition_directory(source: str) -> str | None:
    """The directory of the definition file `source` names; None for an inline, block or HTTP
    request definition (which names no file, so no file beside it is read at load time)."""
    if (os.sep in source or source.endswith(".json")) and not source.startswith("block:"):
        path = Path(source)
        try:
            if path.is_file():
                return str(path.resolve().parent)
        except (OSError, ValueError):
            pass
    return None


def definitions_dir() -> Path:
    """`OPSFLOW_DEFINITIONS_DIR`, else the project's `definitions/`."""
    return Path(os.environ.get("OPSFLOW_DEFINITIONS_DIR") or PROJECT_DEFINITIONS)


def list_definitions(directory: Path | None = None) -> list[Path]:
    """The definition files in `directory`, by name (schema.json is not one)."""
    directory = directory or definitions_dir()
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.json") if p.name != "schema.json")


def find_definition(name: str) -> Path:
    """The file of definition `name`; DefinitionError if there is none.

    A name is never a path, nor `schema` (the JSON Schema beside the definitions); a
    name too long to be a file name is simply not found.
    """
    if not name or "/" in name or "\\" in name or name.startswith(".") or name == "schema":
        raise DefinitionError(f"Pipeline definition not found: {name[:200]}")
    path = definitions_dir() / f"{name}.json"
    try:
        found = path.is_file()
        if path.is_dir():
            raise DefinitionError(f"Pipeline definition {name!r} is a directory: {path}")
    except (OSError, ValueError):  # too long for the file system, or a NUL in the name
        found = False
    if not found:
        raise DefinitionError(f"Pipeline definition not found: {name[:200]}")
    return path


def _name_clash(path: Path, name: str) -> None:
    """DefinitionError when another file of the definitions directory claims the same name."""
    directory = definitions_dir()
    try:
        if path.resolve().parent != directory.resolve():
            return
    except OSError:
        return
    for other in list_definitions(directory):
        if other.resolve() != path.resolve() and _declared_name(other) == name:
            first, second = sorted([path, other])
            raise DefinitionError(f"definition name {name!r} is used by two files: {first} and {second}")


def _declared_name(path: Path) -> str | None:
    """The name `path` would load as (its `name`, else its stem); None for an unreadable file."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return _declared_name_cached(str(path), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=256)
def _declared_name_cached(path: str, mtime_ns: int, size: int) -> str | None:
    try:
        raw = read_json(Path(path))
    except DefinitionError:
        return None
    name = raw.get("name")
    return name if isinstance(name, str) and name else Path(path).stem


def load_definition(
    ref: str | Path | dict[str, Any],
    *,
    name: str | None = None,
    source: Literal["auto", "file", "block"] = "auto",
) -> Pipeline:
    """Load and validate a definition given by name, by path, or inline as a dict.

    A string naming an existing file (or ending in .json) is a path; any other string
    is a definition name looked up in `definitions_dir()`. A block managed in the Prefect
    UI (flows.catalog) is used for `block:NAME`, for `source="block"`, and for a name with
    no file when a Prefect API is configured.
    """
    if isinstance(ref, dict):
        raw, origin, stem = ref, "inline", None
    else:
        text = str(ref)
        is_path = isinstance(ref, Path) or text.endswith(".json") or os.sep in text
        if not is_path and _block_wanted(text, source):
            from flows.catalog import block_definition_for  # imports Prefect: only when a block is wanted

            pipeline = block_definition_for(text, source=source)
            if pipeline is not None:
                return pipeline
        path = Path(text) if is_path else find_definition(text)
        content = _small_file_bytes(path)
        if content is not None:
            # one run loads its definition in the CLI, the flow and every hook: validated once
            pipeline = _validated_file(path, content, name)
            _name_clash(path, _name_or_stem(pipeline.raw, path))
            return pipeline
        raw, origin, stem = read_json(path), str(path), path.stem
        _name_clash(path, _name_or_stem(raw, path))
        return validate(raw, source=origin, name=name or raw.get("name") or stem)
    return validate(raw, source=origin, name=name or raw.get("name") or stem or "inline")


def _name_or_stem(raw: dict[str, Any], path: Path) -> str:
    """The name a file's definition loads as: its `name` when a non-empty string, else the stem."""
    name = raw.get("name")
    return name if isinstance(name, str) and name else path.stem


def _small_file_bytes(path: Path) -> bytes | None:
    """The file's bytes when it is a regular file within the size limit (else read_json says why)."""
    try:
        if path.is_file() and path.stat().st_size <= MAX_DEFINITION_BYTES:
            return path.read_bytes()
    except OSError:
        pass
    return None


_VALIDATED: OrderedDict[tuple[str, str, str | None], Pipeline] = OrderedDict()
_VALIDATED_MAX = 64


def _validated_file(path: Path, content: bytes, name: str | None) -> Pipeline:
    """A definition file validated once per content: these very bytes, not a second read."""
    key = (str(path), hashlib.sha256(content).hexdigest(), name)
    if key in _VALIDATED:
        _VALIDATED.move_to_end(key)
        return _VALIDATED[key]
    raw = parse_json(content, path)
    pipeline = validate(raw, source=str(path), name=name or raw.get("name") or path.stem)
    _VALIDATED[key] = pipeline
    while len(_VALIDATED) > _VALIDATED_MAX:
        _VALIDATED.popitem(last=False)
    return pipeline


def _block_wanted(text: str, source: str) -> bool:
    """Ask Prefect for a block only when told to, or when no file has this name and an API is set."""
    if source == "block" or text.startswith("block:"):
        return True
    if source == "file" or (definitions_dir() / f"{text}.json").exists():  # a directory: say so
        return False
    from flows.local_server import configured_api_url  # env/profile only; no Prefect import

    return configured_api_url() is not None


def canonical_hash(raw: dict[str, Any]) -> str:
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def validate(raw: dict[str, Any], *, source: str = "inline", name: str | None = None) -> Pipeline:
    """Validate `raw` completely; raise DefinitionError listing every problem (see flows.validation)."""
    from flows.validation import validate_definition  # it builds on the models above

    return validate_definition(raw, source=source, name=name)
