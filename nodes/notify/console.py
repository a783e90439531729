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


def format_message(message: Message) -> str:
    return f"[{message.severity.upper()}] {message.title}\n{message.text}"


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
