"""`slack` driver: an incoming webhook, or `chat.postMessage` with a bot token (threads resolves)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from nodes.base import REDACTED, NodeContext
from nodes.errors import ConfigError, DeliveryError, NodeError
from nodes.notify._http import Outbound, delivered, target
from nodes.notify.escape import slack as esc
from nodes.notify.escape import slack_link
from nodes.notify.message import SEVERITY_COLOURS, SEVERITY_EMOJI, Message, truncate

if TYPE_CHECKING:
    import httpx

HTTP = True
# Slack errors that say "try again", as opposed to a bad token, channel or payload.
_TRANSIENT = {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}


class Config(BaseModel):
    """Slack: `webhook_url` (else SLACK_WEBHOOK_URL), or `token` (else SLACK_BOT_TOKEN) + `channel`."""

    model_config = ConfigDict(extra="forbid")

    webhook_url: SecretStr | None = Field(
        default=None, description="Incoming webhook URL; default: the SLACK_WEBHOOK_URL environment variable."
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bot token (xoxb-...) for chat.postMessage, which can thread resolves under the alert.",
    )
    channel: str | None = Field(default=None, description="Channel id or name (needed with a bot token).")
    api_url: str = Field(
        default="https://slack.com/api", description="Slack Web API base URL (overridable for tests)."
    )
    username: str | None = Field(default=None, description="Display name override, where the app allows it.")
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")

    @model_validator(mode="after")
    def _one_mode(self) -> Config:
        if self.webhook_url is not None and self.token is not None:
            raise ValueError("set either webhook_url or token, not both")
        return self


def _mode(config: Config) -> tuple[str, str | None]:
    """(`api` | `webhook`, the secret that authorises it); env variables fill what config leaves out."""
    if config.token is not None:
        return "api", config.token.get_secret_value()
    if config.webhook_url is not None:
        return "webhook", config.webhook_url.get_secret_value()
    if os.environ.get("SLACK_BOT_TOKEN") and (config.channel or os.environ.get("SLACK_CHANNEL")):
        return "api", os.environ["SLACK_BOT_TOKEN"]
    return "webhook", os.environ.get("SLACK_WEBHOOK_URL")


def build_payload(message: Message, channel: str | None = None, thread_ts: str | None = None) -> dict:
    """`text` fallback for notifications plus Block Kit blocks; the colour bar is an attachment.

    Every piece of alert or analysis text is escaped for mrkdwn: it is data, not markup.
    """
    key = "resolved" if message.resolved else message.level
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(message.title, 150)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _severity_text(message, key)}},
    ]
    body = message.summary or message.text
    if body:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(esc(body), 3000)}})
    if message.alert_lines:
        group = "*Alerts*\n" + "\n".join(f"• {esc(line)}" for line in message.alert_lines)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(group, 3000)}})
    if message.probable_cause:
        cause = truncate(f"*Probable cause:* {esc(message.probable_cause)}", 3000)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": cause}})
    if message.recommendations:
        lines = [
            f"• *{esc(r.get('title', ''))}* ({esc(r.get('priority', '-'))}): {esc(r.get('description', ''))}"
            for r in message.recommendations[:10]
        ]
        recs = truncate("*Recommendations*\n" + "\n".join(lines), 3000)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": recs}})
    if message.links:
        links = " | ".join(slack_link(link["url"], link["title"]) for link in message.links)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(links, 2000)}]})
    facts = [f"*{esc(k)}:* {esc(v)}" for k, v in message.fields.items() if v][:10]
    payload: dict[str, Any] = {
        "text": truncate(esc(f"{message.title}\n{message.text}"), 3000),
        "blocks": blocks,
        "attachments": [{"color": SEVERITY_COLOURS[key], "fallback": truncate(message.title, 150)}],
    }
    if facts:
        payload["attachments"][0]["blocks"] = [
            {"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(f, 2000)} for f in facts]}
        ]
    if channel:
        payload["channel"] = channel
    if thread_ts:
        payload["thread_ts"] = thread_ts
    return payload


def _severity_text(message: Message, key: str) -> str:
    """`:warning: *WARNING* (assessed: critical)`, and the target the alert is about."""
    line = f"{SEVERITY_EMOJI[key]} *{esc(message.severity_line)}*"
    if message.target:
        line += f"  ·  target *{esc(message.target)}*"
    return line


def _thread(message: Message) -> tuple[str | None, str | None]:
    """(channel, ts) of the incident's first Slack message, when an earlier run posted one."""
    state = ((message.incident or {}).get("notification_state") or {}).get("slack") or {}
    return state.get("channel"), state.get("ts")


def outbound(config: Config, message: Message, *, strict: bool = True) -> Outbound:
    """The post: to the incoming webhook, or `chat.postMessage` with the bot token, in the
    incident's thread once an earlier run posted its first message (`strict=False`: what is
    missing reads ***, for a preview)."""
    mode, secret = _mode(config)
    if not secret:
        if strict:
            raise ConfigError("slack: no webhook_url or token configured and SLACK_WEBHOOK_URL is not set")
        secret = REDACTED
    if mode == "webhook":
        return Outbound("POST", secret, body=build_payload(message), secrets=(secret,))
    thread_channel, ts = _thread(message)
    channel = thread_channel or config.channel or os.environ.get("SLACK_CHANNEL")
    if not channel and strict:
        raise ConfigError("slack: a bot token needs a channel (config `channel` or SLACK_CHANNEL)")
    payload = build_payload(message, channel, ts)
    if config.username:
        payload["username"] = config.username
    return _web_api(config, "chat.postMessage", payload, secret)


def _web_api(config: Config, method: str, body: dict, secret: str) -> Outbound:
    """One Web API call, authorised by the bot token."""
    url = f"{config.api_url.rstrip('/')}/{method}"
    return Outbound("POST", url, {"Authorization": f"Bearer {secret}"}, body, secrets=(secret,))


def preview(config: Config, message: Message) -> dict[str, Any]:
    """The request `send` would make first, masked; a webhook URL or token not set reads ***."""
    return outbound(config, message, strict=False).preview("slack")


def send(config: Config, message: Message, ctx: NodeContext, client: httpx.Client | None = None) -> dict:
    """Post the message; with a bot token, resolves and repeats go into the incident's thread."""
    mode, secret = _mode(config)
    out = outbound(config, message)
    response = out.send("slack", ctx, config.timeout_seconds, client)
    if mode == "webhook":
        return delivered("slack", response, mode="webhook", target=target(out.url))

    channel, ts = out.body["channel"], out.body.get("thread_ts")
    try:
        data = response.json()
    except ValueError as exc:
        raise DeliveryError("slack chat.postMessage: answer is not JSON", retryable=True) from exc
    if not data.get("ok"):
        error = str(data.get("error") or "unknown_error")
        raise DeliveryError(
            f"slack chat.postMessage to {channel}: {error}",
            retryable=error in _TRANSIENT,
            details={"http_status": response.status_code, "slack_error": error},
        )
    posted_channel = data.get("channel") or channel
    root = ts or data.get("ts")
    extra: dict[str, Any] = {}
    if ts and (message.resolved or message.partial):
        extra = _update_root(config, message, ctx, client, secret, posted_channel, ts)
    return delivered(
        "slack",
        response,
        mode="api",
        message_id=data.get("ts"),
        channel=posted_channel,
        thread_ts=ts,
        incident_state={"slack": {"ts": root, "channel": posted_channel}},
        **extra,
    )


def _update_root(config: Config, message: Message, ctx: NodeContext, client, secret, channel, ts) -> dict:
    """Edit the incident's first message (`chat.update`) so it shows the resolve, not the page.

    The threaded reply is already delivered: a failed edit is recorded and logged, not
    raised, so a retry does not post the reply twice.
    """
    body = build_payload(message, channel)
    body["ts"] = ts
    try:
        update = _web_api(config, "chat.update", body, secret)
        response = update.send("slack", ctx, config.timeout_seconds, client)
        data = response.json()
    except (NodeError, ValueError) as exc:
        ctx.log.warning("slack chat.update of %s failed: %s", ts, exc)
        return {"root_updated": False, "root_update_error": str(exc)}
    if not data.get("ok"):
        ctx.log.warning("slack chat.update of %s refused: %s", ts, data.get("error"))
        return {"root_updated": False, "root_update_error": str(data.get("error") or "unknown_error")}
    return {"root_updated": True}
