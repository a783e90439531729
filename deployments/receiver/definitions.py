"""The receiver's definition routes (list, describe and validate, as the CLI does), and which
definitions its HTTP routes may run: those that declare a `{"webhook": {}}` trigger."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deployments.receiver.http import ReceiverError
from flows.definition import Pipeline, find_definition, list_definitions, load_definition, read_json, validate
from flows.parameters import ParameterError, resolve_parameters
from flows.triggers import accepts_webhook
from flows.typed_keys import masked_definition
from nodes.errors import DefinitionError

__all__ = [
    "check_payload",
    "describe",
    "describe_all",
    "require_definition",
    "require_webhook",
    "validate_named",
]


def require_definition(name: str) -> Path:
    """The definition's file; 404 naming it when there is none (a name is never a path)."""
    try:
        return find_definition(name)
    except DefinitionError as exc:
        raise ReceiverError(404, str(exc)) from None


def require_webhook(name: str) -> Pipeline | None:
    """The definition, when it declares a webhook trigger; 404 when there is none, 403 when it
    declares none: a script-stage pipeline is never runnable over HTTP by accident.

    An invalid definition (None: its run reports why) is judged by its raw `triggers`, so an alert
    for a pipeline someone broke is still taken, and one never opened to HTTP is still refused.
    """
    path = require_definition(name)
    pipeline: Pipeline | None
    try:
        pipeline = load_definition(path)
        allowed = accepts_webhook(pipeline.definition.triggers)
    except DefinitionError:
        pipeline, allowed = None, _declares_webhook(path)
    if not allowed:
        raise ReceiverError(
            403,
            f"definition {name!r} declares no webhook trigger, so it cannot be run over HTTP; "
            'add {"webhook": {}} to its "triggers" to allow it',
        )
    return pipeline


def _declares_webhook(path: Path) -> bool:
    try:
        triggers = read_json(path).get("triggers")
    except DefinitionError:
        return False
    return isinstance(triggers, list) and any(isinstance(t, dict) and "webhook" in t for t in triggers)


def check_payload(pipeline: Pipeline | None, payload: dict[str, Any]) -> None:
    """400 naming every payload value that does not fit the definition's parameters."""
    if pipeline is None or not pipeline.definition.parameters:
        return
    try:
        resolve_parameters(pipeline.definition.parameters, payload, definition=pipeline.name)
    except ParameterError as exc:
        raise ReceiverError(
            400, f"the payload does not fit the parameters of {pipeline.name!r}: " + "; ".join(exc.problems)
        ) from None


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
        "webhook": accepts_webhook(pipeline.definition.triggers),
    }
    if full:
        info["nodes"] = [
            {"id": n.id, "type": n.type, "next": pipeline.successors[n.id]} for n in pipeline.definition.nodes
        ]
        info["settings"] = pipeline.settings  # names only; values are never read here
        info["parameters"] = {
            name: spec.model_dump(exclude_defaults=True)
            for name, spec in pipeline.definition.parameters.items()
        }
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
