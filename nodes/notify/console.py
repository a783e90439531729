"""`console` driver: print the message to standard output (local runs, tests, dry pipelines)."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from nodes.base import NodeContext
from nodes.notify.message import Message

HTTP = False


class Config(BaseModel):
    """Where and how to print."""

    model_config = ConfigDict(extra="forbid")

    stream: str = Field(default="stdout", description="`stdout` or `stderr`.", pattern="^std(out|err)$")


_SHOWN = ("target", "labels", "value", "target now", "also firing", "silenced", "environment")


def format_message(message: Message) -> str:
    """`[WARNING (assessed: critical)] title`, the text, the target's facts, then the links."""
    head = message.severity_line if not message.resolved else message.severity.upper()
    lines = [f"[{head}] {message.title}", message.text]
    lines += [f"- {line}" for line in message.alert_lines]
    lines += [f"{name}: {message.fields[name]}" for name in _SHOWN if message.fields.get(name)]
    lines += [f"{link['title']}: {link['url']}" for link in message.links]
    return "\n".join(lines)


def preview(config: Config, message: Message) -> dict[str, Any]:
    return {"driver": "console", "method": "print", "url": config.stream, "body": format_message(message)}


def send(config: Config, message: Message, ctx: NodeContext, client: Any = None) -> dict[str, Any]:
    """Print; `client` is accepted for a uniform driver signature and unused."""
    stream = sys.stdout if config.stream == "stdout" else sys.stderr
    print(format_message(message), file=stream, flush=True)
    ctx.log.info("notification printed: %s", message.title)
    return {
        "driver": "console",
        "status": "delivered",
        "http_status": None,
        "message_id": None,
        "error": None,
        "target": config.stream,
    }
