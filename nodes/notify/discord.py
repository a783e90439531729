"""`discord` driver: a Discord channel webhook with one embed per message."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.notify._http import Outbound, delivered, secret_or_env, target
from nodes.notify.escape import markdown as md
from nodes.notify.message import SEVERITY_COLOURS, Message, truncate

if TYPE_CHECKING:
    import httpx

HTTP = True


class Config(BaseModel):
    """Discord webhook settings."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = Field(
        default=None,
        description="Channel webhook URL; default: the DISCORD_WEBHOOK_URL environment variable.",
    )
    username: str | None = Field(default="opsflow", description="Name the message is posted under.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")


def build_payload(config: Config, message: Message) -> dict[str, Any]:
    """Discord's limits: title 256, description 4096, 25 fields of 1024, 6000 characters in all."""
    key = "resolved" if message.resolved else message.level
    fields: list[dict[str, Any]] = [
        {"name": truncate(k, 256), "value": truncate(md(v), 200), "inline": True}
        for k, v in message.fields.items()
        if v
    ]
    fields += [
        {"name": truncate(md(link["title"]), 100), "value": truncate(link["url"], 400), "inline": False}
        for link in message.links
    ]
    fields = fields[:15]
    title = truncate(message.title, 256)
    used = len(title) + sum(len(f["name"]) + len(f["value"]) for f in fields)
    embed: dict[str, Any] = {
        "title": title,
        "description": truncate(_description(message), max(200, min(4096, 5900 - used))),
        "color": int(SEVERITY_COLOURS[key].lstrip("#"), 16),
    }
    if fields:
        embed["fields"] = fields
    # no mention in alert text may ping anyone, whatever escaping misses
    payload: dict[str, Any] = {"content": "", "embeds": [embed], "allowed_mentions": {"parse": []}}
    if config.username:
        payload["username"] = config.username
    return payload


def _description(message: Message) -> str:
    head = f"**{md(message.severity_line)}**" + (
        f" · target **{md(message.target)}**" if message.target else ""
    )
    quote = f"> {md(message.quote)}\n" if message.quote else ""  # a webhook cannot reply: quote the page
    return f"{quote}{head}\n{md(message.text)}"


def outbound(config: Config, message: Message, *, strict: bool = True) -> Outbound:
    """The embed, to the webhook URL (config, else DISCORD_WEBHOOK_URL; `strict=False`: *** if unset)."""
    url = secret_or_env(config.webhook_url, "DISCORD_WEBHOOK_URL", "discord", "webhook_url", strict=strict)
    return Outbound("POST", url, body=build_payload(config, message), secrets=(url,))


def preview(config: Config, message: Message) -> dict[str, Any]:
    """The request `send` would make, masked; a URL not set reads ***."""
    return outbound(config, message, strict=False).preview("discord")


def send(config: Config, message: Message, ctx: NodeContext, client: httpx.Client | None = None) -> dict:
    """Execute the webhook; Discord answers 204, and a 429 says in JSON how long to wait."""
    out = outbound(config, message)
    response = out.send("discord", ctx, config.timeout_seconds, client)
    message_id = None
    if response.status_code == 200 and response.content:  # `?wait=true` returns the message
        try:
            message_id = response.json().get("id")
        except (ValueError, AttributeError):
            pass
    return delivered("discord", response, message_id=message_id, target=target(out.url))
