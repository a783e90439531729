"""The receiver's definition routes: list, describe and validate, as the CLI does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.receiver.http import ReceiverError
from flows.definition import find_definition, list_definitions, load_definition, validate
from flows.typed_keys import masked_definition
from nodes.errors import DefinitionError

__all__ = ["describe", "describe_all", "require_definition", "validate_named"]


def require_definition(name: str) -> Path:
    """The definition's file; 404 naming it when there is none (a name is never a path)."""
    try:
        return find_definition(name)
    except DefinitionError as exc:
        raise ReceiverError(404, str(exc)) from None


def describe_all() -> list[dict[str, Any]]:
    return [describe(path.stem, path) for path in list_definitions()]


def describe(name: str, path: Path, *, full: bool = False) -> dict[str, Any]:
    """Name, version and nodes of a definition, or why it is invalid; `full` adds the graph and JSON."""
    try:
        pipeline = load_definition(path)
    except DefinitionError as exc:
        return {"name": name, "valid": False, "problems": exc.problems}
    info: dict[str, Any] = {
        "name": pipeline.name,
        "valid": True,
        "description": pipeline.description,
        "definition_version": pipeline.definition_version,
        "nodes": len(pipeline.nodes),
    }
    if full:
        info["nodes"] = [
            {"id": n.id, "type": n.type, "next": pipeline.successors[n.id]} for n in pipeline.definition.nodes
        ]
        info["settings"] = pipeline.settings  # names only; values are never read here
        info["definition"] = masked_definition(pipeline.raw)  # node configs and on_* alike
    return info


def validate_named(name: str, raw: Any) -> dict[str, Any]:
    """`{"valid", "problems"}` for `raw` under `name`, or for the stored definition when `raw` is None."""
    try:
        if raw is None:
            load_definition(require_definition(name))
        elif not isinstance(raw, dict):
            raise ReceiverError(400, "the body must be a definition JSON object")
        elif not name or "/" in name or "\\" in name or name.startswith(".") or len(name) > 128:
            raise ReceiverError(400, f"not a definition name: {name[:128]!r}")
        else:
            validate(raw, source="request", name=name)
    except DefinitionError as exc:
        return {"valid": False, "problems": exc.problems}
    return {"valid": True, "problems": []}
