"""Notification drivers. `DRIVERS` maps a driver name to its module.

A driver module holds a pydantic `Config` (extra="forbid", SecretStr for URLs and
keys, a description on every field) and `send(config, message, ctx) -> dict`, which
delivers one `Message` and returns a delivery record, or raises `DeliveryError`.
`preview(config, message) -> dict` shows what would be sent, secrets masked.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from nodes import unknown_name
from nodes.errors import DefinitionError

__all__ = ["DRIVERS", "get_driver"]

DRIVERS: dict[str, str] = {
    "console": "nodes.notify.console",
}


def get_driver(name: str) -> ModuleType:
    """The driver module called `name`; an unknown name lists the known ones."""
    try:
        return import_module(DRIVERS[name])
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("notify driver", name, DRIVERS)) from None
