"""Notification drivers. `DRIVERS` maps a driver name to its module.

A driver module holds a pydantic `Config`, `HTTP`, `send(config, message, ctx, client=None)`,
which delivers one `Message` and returns a delivery record, and `preview(config, message)`,
which shows what would be sent, secrets masked: `nodes.protocols.Driver` says each in full.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, cast

from nodes import unknown_name
from nodes.errors import DefinitionError

if TYPE_CHECKING:
    from nodes.protocols import Driver

__all__ = ["DRIVERS", "get_driver"]

DRIVERS: dict[str, str] = {
    "console": "nodes.notify.console",
    "discord": "nodes.notify.discord",
    "email": "nodes.notify.email",
    "pagerduty": "nodes.notify.pagerduty",
    "slack": "nodes.notify.slack",
    "teams": "nodes.notify.teams",
    "webhook": "nodes.notify.webhook",
}


def get_driver(name: str) -> Driver:
    """The driver module called `name`; an unknown name lists the known ones."""
    try:
        return cast("Driver", import_module(DRIVERS[name]))
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("notify driver", name, DRIVERS)) from None
