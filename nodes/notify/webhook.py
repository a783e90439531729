"""`webhook` driver: any HTTP endpoint, with a JSON body rendered from a Jinja template."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.errors import ConfigError
from nodes.notify._http import Outbound, delivered, target
from nodes.notify.message import Message
from nodes.templating import render_template

if TYPE_CHECKING:
    import httpx

HTTP = True


class Config(BaseModel):
    """Generic webhook settings; header values are secrets (they usually carry a token)."""

    model_config = ConfigDict(extra="forbid")

    url: SecretStr = Field(description="Endpoint URL (secret: webhook URLs often embed a token).")
    method: Literal["POST", "PUT", "PATCH"] = Field(default="POST", description="HTTP method.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers; values are treated as secrets."
    )
    body: str | dict[str, Any] | list[Any] | None = Field(
        default=None,
        description=(
            "JSON body: a Jinja template string that renders to JSON (each `{{ }}` is JSON-encoded: "
            'a string as string content, so quote it, `"{{ message.text }}"`; anything else as JSON), '
            "or an object whose strings are templates; variables: payload, nodes, incident, run, "
            "message. Default: the message as JSON."
        ),
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout in seconds.")


def message_data(message: Message) -> dict[str, Any]:
    """The `message` variable of body templates (and the default body)."""
    incident = message.incident or {}
    return {
        **message.as_dict(),
        "summary": message.summary,
        "probable_cause": message.probable_cause,
        "recommendations": message.recommendations,
        "fields": message.fields,
        "links": message.links,
        "alerts": message.alert_lines,
        "incident": {k: incident.get(k) for k in ("id", "key", "status", "severity")} if incident else None,
        "run": message.run,
    }


def build_body(config: Config, message: Message) -> Any:
    data = message_data(message)
    if config.body is None:
        return data
    variables = {**message.data, "message": data}
    if isinstance(config.body, str):
        text = render_template(config.body, variables, where="webhook body", json_safe=True)
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"webhook body template did not render to JSON: {exc}") from exc
    return _render_leaves(config.body, variables)


def _render_leaves(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            return render_template(value, variables, where="webhook body")
        return value
    if isinstance(value, dict):
        return {k: _render_leaves(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_leaves(v, variables) for v in value]
    return value


def outbound(config: Config, message: Message) -> Outbound:
    """The rendered body, to the URL with the headers (every header value is a secret)."""
    url = config.url.get_secret_value()
    headers = {name: value.get_secret_value() for name, value in config.headers.items()}
    return Outbound(
        config.method, url, headers, build_body(config, message), secrets=(url, *headers.values())
    )


def preview(config: Config, message: Message) -> dict[str, Any]:
    """The request `send` would make, masked: the URL's host only, header values as ***."""
    return outbound(config, message).preview("webhook")


def send(config: Config, message: Message, ctx: NodeContext, client: httpx.Client | None = None) -> dict:
    """Send the rendered body; any 2xx is delivered."""
    out = outbound(config, message)
    response = out.send("webhook", ctx, config.timeout_seconds, client)
    return delivered("webhook", response, target=target(out.url))
