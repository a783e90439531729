"""Node handlers: plain functions that know nothing of Prefect.

A node type is a module with a pydantic `Config` and `run(config, ctx) -> dict`, and may
have more: `nodes.protocols.NodeType` says what. `NODE_TYPES` maps each type name to its
module path (or `module:object` for an object with the same members); modules are
imported on first use, so loading a definition does not import what its nodes do not need.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, cast

from nodes.errors import DefinitionError

if TYPE_CHECKING:
    from nodes.protocols import NodeType

__all__ = ["NODE_TYPES", "get_node_type", "unknown_name"]

NODE_TYPES: dict[str, str] = {
    "context": "nodes.context",
    "check": "nodes.check",
    "transform": "nodes.transform",
    "condition": "nodes.condition",
    "notify": "nodes.notify.node",
    "intelligence": "nodes.intelligence.node",
    "ingest": "nodes.ingest.node",
    "approval": "nodes.approval",
    "command": "nodes.command.node",
}


def unknown_name(kind: str, name: object, known: dict) -> str:
    """The message for a registry miss: what was asked for and every known name."""
    return f"unknown {kind} {name!r} (known: {', '.join(sorted(known))})"


def get_node_type(name: str) -> NodeType:
    """The handler module of node type `name`; an unknown name lists the known ones."""
    try:
        path = NODE_TYPES[name]
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("node type", name, NODE_TYPES)) from None
    module_path, _, attribute = path.partition(":")
    module = import_module(module_path)
    return cast("NodeType", getattr(module, attribute) if attribute else module)
