"""`teams` driver: a Microsoft Teams Workflows webhook carrying an Adaptive Card."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.notify._http import Outbound, delivered, secret_or_env, target
from nodes.notify.escape import markdown as md
from nodes.notify.message import Message, truncate

if TYPE_CHECKING:
    import httpx

HTTP = True
_COLOUR = {"critical": "Attention", "error": "Attention", "warning": "Warning", "info": "Accent"}


class Config(BaseModel):
    """Teams Workflows ("Post to a channel when a webhook request is received") settings."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = Field(
        default=None,
        description="Workflows webhook URL; default: the TEAMS_WEBHOOK_URL environment variable.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")


def build_card(message: Message) -> dict[str, Any]:
    """An Adaptive Card 1.4 message; Teams caps a message near 28 KB, so blocks are cut short."""
    body: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": truncate(message.title, 300),
            "weight": "Bolder",
            "size": "Medium",
            "wrap": True,
            "style": "heading",
            "color": "Good" if message.resolved else _COLOUR[message.level],
        },
        {"type": "TextBlock", "text": _severity_text(message), "wrap": True, "isSubtle": True},
        *(
            [{"type": "TextBlock", "text": f"> {md(message.quote)}", "wrap": True, "isSubtle": True}]
            if message.quote
            else []
        ),
        {"type": "TextBlock", "text": truncate(md(message.summary or message.text), 8000), "wrap": True},
    ]
    if message.probable_cause:
        cause = truncate(f"**Probable cause:** {md(message.probable_cause)}", 2000)
        body.append({"type": "TextBlock", "text": cause, "wrap": True})
    if message.recommendations:
        lines = "\n".join(
            f"- **{md(r.get('title', ''))}** ({md(r.get('priority', '-'))}): {md(r.get('description', ''))}"
            for r in message.recommendations[:10]
        )
        body.append({"type": "TextBlock", "text": truncate(lines, 6000), "wrap": True})
    facts = [{"title": k, "value": truncate(str(v), 200)} for k, v in message.fields.items() if v]
    if facts:
        body.append({"type": "FactSet", "facts": facts[:10]})
    content: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": body,
        "msteams": {"width": "full"},
    }
    if message.links:
        content["actions"] = [
            {"type": "Action.OpenUrl", "title": truncate(link["title"], 60), "url": link["url"]}
            for link in message.links
        ]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": content}
        ],
    }


def _severity_text(message: Message) -> str:
    line = f"**{md(message.severity_line)}**"
    return line + (f" · target **{md(message.target)}**" if message.target else "")


def outbound(config: Config, message: Message, *, strict: bool = True) -> Outbound:
    """The card, to the Workflows URL (config, else TEAMS_WEBHOOK_URL; `strict=False`: *** if unset)."""
    url = secret_or_env(config.webhook_url, "TEAMS_WEBHOOK_URL", "teams", "webhook_url", strict=strict)
    return Outbound("POST", url, body=build_card(message), secrets=(url,))


def preview(config: Config, message: Message) -> dict[str, Any]:
    """The request `send` would make, masked; a URL not set reads ***."""
    return outbound(config, message, strict=False).preview("teams")


def send(config: Config, message: Message, ctx: NodeContext, client: httpx.Client | None = None) -> dict:
    """Post the card; Workflows answers 202 (queued) and any 2xx counts as delivered."""
    out = outbound(config, message)
    response = out.send("teams", ctx, config.timeout_seconds, client)
    return delivered("teams", response, target=target(out.url))
