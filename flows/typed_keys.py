"""Keys typed into a definition as text (not `${...}` references): where they are, and the JSON without them.

Node configs and the pipeline-level notifications (`on_start`, `on_success`, `on_failure`,
each a notify config) both take driver keys; whatever shows or stores a definition
must treat them alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["POLICIES", "masked_definition", "typed_in_keys"]

POLICIES = ("on_start", "on_success", "on_failure")


def _configs(raw: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(where, node type, config) of every config in the raw definition JSON."""
    for node in raw.get("nodes") or []:
        if isinstance(node, dict) and isinstance(node.get("config"), dict) and "type" in node:
            yield f"node {node.get('id')!r} config", str(node["type"]), node["config"]
    for policy in POLICIES:
        entries = raw.get(policy)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict):
                yield f"{policy}[{index}]", "notify", entry


def _typed(node_type: str, config: dict[str, Any]) -> set[str]:
    """The secret values typed into `config` (the `SecretStr` fields that hold no `${...}`)."""
    from nodes.base import typed_in_secrets
    from nodes.errors import OpsflowError
    from nodes.runtime import validate_config

    try:
        found = typed_in_secrets(validate_config(node_type, config))
    except OpsflowError:  # an invalid config is reported by validation, with its fields named
        return set()
    return {value for value in found if "${" not in value}


def masked_definition(raw: dict[str, Any]) -> dict[str, Any]:
    """The definition JSON with every typed-in key as `***` (references kept, so the JSON
    can be edited and validated again)."""
    from nodes.base import Secrets

    def mask(node_type: str, config: dict[str, Any]) -> dict[str, Any]:
        typed = _typed(node_type, config)
        return Secrets(typed).redact(config) if typed else config

    masked = dict(raw)
    if isinstance(raw.get("nodes"), list):
        masked["nodes"] = [
            {**node, "config": mask(str(node["type"]), node["config"])}
            if isinstance(node, dict) and isinstance(node.get("config"), dict) and "type" in node
            else node
            for node in raw["nodes"]
        ]
    for policy in POLICIES:
        if isinstance(raw.get(policy), list):
            masked[policy] = [mask("notify", e) if isinstance(e, dict) else e for e in raw[policy]]
    return masked


def typed_in_keys(raw: dict[str, Any]) -> list[str]:
    """Where keys are typed in, as `node 'tell' config.webhook_url` or `on_failure[0].routing_key`."""
    places: list[str] = []
    for where, node_type, config in _configs(raw):
        typed = _typed(node_type, config)
        if typed:
            places.extend(f"{where}.{path}" for path in _paths(config, typed))
    return places


def _paths(value: Any, typed: set[str], prefix: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if any(secret in value for secret in typed):
            yield prefix
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, typed, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, typed, f"{prefix}[{index}]")
