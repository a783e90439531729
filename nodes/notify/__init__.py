"""Notification drivers. `DRIVERS` maps a driver name to its module.

A driver module holds a pydantic `Config` (extra="forbid", SecretStr for URLs and
keys, a description on every field, `timeout_seconds` where it does I/O),
`send(config, message, ctx, client=None) -> dict`, which delivers one `Message` and
returns a delivery record (`driver`, `status`, `http_status`, `message_id`, `error`,
optional `incident_state` to persist on the incident), or raises `DeliveryError`;
`preview(config, message) -> dict` (`driver`, `method`, `url` (host only), `body`)
shows what would be sent, secrets masked; and `HTTP` (True when `client`, a shared
`httpx.Client`, is used).
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from nodes import unknown_name
from nodes.errors import DefinitionError

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


def get_driver(name: str) -> ModuleType:
    """The driver module called `name`; an unknown name lists the known ones."""
    try:
        return import_module(DRIVERS[name])
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("notify driver", name, DRIVERS)) from None
