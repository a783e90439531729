"""`notify` node: build one message from the run and deliver it to one or more channels.

A retry does not re-send to channels an earlier attempt of the same run already reached:
delivered channels are remembered per (trace id, node id) in the incident store's
database (`nodes.incidents.run_memory`), so a flow run retried from the UI, or on another
worker, remembers them too. Console output is remembered by this process only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from nodes.base import REDACTED, NodeContext
from nodes.errors import DefinitionError, DeliveryError, NodeError
from nodes.notify import get_driver
from nodes.notify.message import Message, build_message
from nodes.templating import REFERENCE, resolve

__all__ = ["Channel", "Config", "forget_deliveries", "preview", "resolve_config", "run"]

_COMMON = ("driver", "channel", "title", "message", "severity")


class Channel(BaseModel):
    """One delivery target: a driver name plus that driver's own settings."""

    model_config = ConfigDict(extra="allow")

    driver: str = Field(description="Driver name, e.g. `slack`, `email`, `console`.")
    channel: str | None = Field(default=None, description="Channel/room name, where the driver has one.")
    title: str | None = Field(default=None, description="Overrides the node's title for this channel.")
    message: str | None = Field(default=None, description="Overrides the node's message for this channel.")
    severity: str | None = Field(default=None, description="Overrides the node's severity for this channel.")

    _settings: BaseModel = PrivateAttr()

    @model_validator(mode="after")
    def _validate_driver_settings(self) -> Channel:
        try:
            driver = get_driver(self.driver)
        except DefinitionError as exc:
            raise ValueError(str(exc)) from None
        settings = dict(self.model_extra or {})
        if self.channel is not None and "channel" in driver.Config.model_fields:
            settings["channel"] = self.channel
        try:
            self._settings = driver.Config.model_validate(settings)
        except ValidationError as exc:
            raise ValueError(_driver_errors(self.driver, exc)) from None
        return self

    @property
    def settings(self) -> BaseModel:
        return self._settings


class Config(Channel):
    """A notification: the message fields, and one driver or a `channels` fan-out."""

    driver: str = Field(default="console", description="Driver for a single channel.")
    channels: list[Channel] | None = Field(
        default=None, description="Deliver to each of these instead of the node's own driver."
    )
    severity_from_analysis: bool = Field(
        default=False,
        description=(
            "Route at the analysis's severity instead of the alert's own. Off by default: the "
            "source's severity is routed and the analysis's view is only shown as `assessed`."
        ),
    )

    def targets(self) -> list[Channel]:
        return list(self.channels) if self.channels else [self]

    @model_validator(mode="before")
    @classmethod
    def _channels_replace_driver(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("channels") and "driver" not in data:
            data = {**data, "driver": "console"}
        return data


def _driver_errors(driver: str, exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{driver}.{loc}: {err['msg']}" if loc else f"{driver}: {err['msg']}")
    return "; ".join(parts)


def message_for(config: Config, target: Channel, ctx: NodeContext) -> Message:
    return build_message(
        ctx,
        title=target.title or config.title,
        message=target.message or config.message,
        severity=target.severity or config.severity,
        severity_from_analysis=config.severity_from_analysis,
    )


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    """Deliver to every target concurrently; fail (listing each failure) unless all succeeded."""
    targets = config.targets()
    for target in targets:
        _register_secrets(target.settings, ctx)
    durable = any(t.driver != "console" for t in targets)
    earlier = _remembered(ctx, durable)
    keys = [_channel_key(i, t) for i, t in enumerate(targets)]
    pending = [i for i, k in enumerate(keys) if k not in earlier]

    messages: dict[tuple, Message] = {}  # built once per distinct override, shared read-only
    for target in targets:
        overrides = (
            target.title or config.title,
            target.message or config.message,
            target.severity or config.severity,
        )
        if overrides not in messages:
            messages[overrides] = message_for(config, target, ctx)
    outcomes: dict[int, tuple[dict[str, Any], NodeError | None]] = {}
    with _http_client(targets, pending) as client:

        def deliver(i: int) -> tuple[int, tuple[dict[str, Any], NodeError | None]]:
            t = targets[i]
            message = messages[
                (t.title or config.title, t.message or config.message, t.severity or config.severity)
            ]
            outcome = _deliver(t, message, ctx, client)
            if outcome[1] is None:
                _remember(ctx, keys[i], outcome[0], durable=t.driver != "console")
            return i, outcome

        if len(pending) == 1:
            outcomes.update([deliver(pending[0])])
        elif pending:
            with ThreadPoolExecutor(max_workers=min(64, len(pending))) as pool:
                outcomes.update(pool.map(deliver, pending))

    deliveries, failures = [], []
    for i, key in enumerate(keys):
        if i in outcomes:
            record, error = outcomes[i]
            if error is not None:
                failures.append(error)
        else:
            record = {**earlier[key], "earlier_attempt": True}
        deliveries.append({**record, "channel_index": i})
    output = {
        "message": next(iter(messages.values())).as_dict(),
        "channels_attempted": len(targets),
        "channels_succeeded": len(targets) - len(failures),
        "deliveries": deliveries,
    }
    state: dict[str, Any] = {}
    for record in deliveries:
        state.update(record.get("incident_state") or {})
    if state:
        output["incident_state"] = state
        _keep_incident_state(state, ctx)
    output = ctx.secrets.redact(output)
    if failures:
        summary = "; ".join(f"{d['driver']}: {d['error']}" for d in output["deliveries"] if d.get("error"))
        raise DeliveryError(
            ctx.secrets.redact(f"{len(failures)} of {len(targets)} channel(s) failed: {summary}"),
            retryable=any(e.retryable for e in failures),
            retry_after=max((e.retry_after or 0 for e in failures), default=None) or None,
            details=output,
        )
    return output


def _keep_incident_state(state: dict[str, Any], ctx: NodeContext) -> None:
    """Store what a resolve must find later (Slack's thread ts) on the run's incident.

    The message is already delivered: a store failure is logged, not raised, so a
    retry does not send it twice.
    """
    incident = ctx.incident or {}
    incident_id = incident.get("id")
    if not incident_id:
        return
    from nodes.incidents.store import save_notification_state

    try:
        incident["notification_state"] = save_notification_state(incident_id, state)
    except Exception as exc:
        ctx.log.warning("could not store the notification state of incident %s: %s", incident_id, exc)


def _deliver(target: Channel, message: Message, ctx: NodeContext, client: Any):
    try:
        record = get_driver(target.driver).send(target.settings, message, ctx, client=client)
        return ctx.secrets.redact(record), None
    except NodeError as exc:
        exc.message = ctx.secrets.redact(exc.message)
        failed: dict[str, Any] = {"driver": target.driver, "status": "failed", "error": exc.message}
        failed["http_status"] = exc.details.get("http_status")
        if exc.retry_after is not None:
            failed["retry_after"] = exc.retry_after
        return failed, exc
    except Exception as exc:  # a driver bug must not hide the other channels' outcome
        error = DeliveryError(ctx.secrets.redact(f"{type(exc).__name__}: {exc}"), retryable=True)
        return {"driver": target.driver, "status": "failed", "error": error.message}, error


@contextlib.contextmanager
def _http_client(targets: list[Channel], pending: list[int]):
    """One pooled httpx client for the whole fan-out, only when an HTTP driver will send."""
    if not any(get_driver(targets[i].driver).HTTP for i in pending):
        yield None
        return
    from nodes.notify._http import new_client

    with new_client(max(10, len(pending))) as client:
        yield client


def _register_secrets(settings: BaseModel, ctx: NodeContext) -> None:
    """Typed-in secrets (not `${...}` references) are scrubbed from results like resolved ones."""
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        values = value.values() if isinstance(value, dict) else [value]
        for item in values:
            if isinstance(item, SecretStr):
                ctx.secrets.add(item.get_secret_value())


# -- channels already delivered, per (trace id, node id) ------------------------------------


def _channel_key(index: int, target: Channel) -> str:
    settings = json.dumps(target.model_dump(mode="json"), sort_keys=True, default=str)
    return f"{index}:{target.driver}:{hashlib.sha256(settings.encode()).hexdigest()[:16]}"


def _remembered(ctx: NodeContext, durable: bool) -> dict[str, dict[str, Any]]:
    from nodes.incidents import run_memory

    if not durable:
        return run_memory.recall_local(ctx.run.trace_id, ctx.node_id)
    return run_memory.recall(ctx.run.trace_id, ctx.node_id, log=ctx.log)


def _remember(ctx: NodeContext, channel: str, record: dict[str, Any], *, durable: bool) -> None:
    from nodes.incidents import run_memory

    run_memory.remember(ctx.run.trace_id, ctx.node_id, channel, record, durable=durable, log=ctx.log)


def forget_deliveries(trace_id: str | None = None) -> None:
    """Drop the delivered-channel memory of this process (of one run, or all): for tests."""
    from nodes.incidents import run_memory

    run_memory.forget_local(trace_id)


# -- config resolution and dry-run ----------------------------------------------------------


def resolve_config(config: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """`templating.resolve`, except `body` templates, which the webhook driver renders with `message`.

    `${...}` references inside `body` are still resolved here; its `{{ }}` are kept verbatim.
    """
    prepared = dict(config)
    if "body" in prepared:
        prepared["body"] = _shield(prepared["body"])
    if isinstance(prepared.get("channels"), list):
        prepared["channels"] = [
            {**c, "body": _shield(c["body"])} if isinstance(c, dict) and "body" in c else c
            for c in prepared["channels"]
        ]
    return resolve(prepared, ctx)


def _shield(value: Any) -> Any:
    if isinstance(value, str):
        if "{{" in value or "{%" in value:
            return "{% raw %}" + value + "{% endraw %}"
        return value
    if isinstance(value, dict):
        return {k: _shield(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shield(v) for v in value]
    return value


def preview(raw_config: dict[str, Any], ctx: NodeContext) -> list[dict[str, Any]]:
    """Per channel, the request that would be sent (method, URL host, body), secrets as ***.

    Sends nothing. A `${VAR}` the environment lacks shows as *** instead of failing.
    """
    view = ctx.for_node(ctx.node_id)
    try:
        config = Config.model_validate(resolve_config(_mask_missing(raw_config, view), view))
    except ValidationError as exc:
        return [{"driver": raw_config.get("driver"), "error": view.secrets.redact(_one_line(exc))}]
    except NodeError as exc:
        return [{"driver": raw_config.get("driver"), "error": view.secrets.redact(exc.message)}]
    previews = []
    for i, target in enumerate(config.targets()):
        _register_secrets(target.settings, view)
        try:
            entry = get_driver(target.driver).preview(target.settings, message_for(config, target, view))
        except NodeError as exc:
            entry = {"driver": target.driver, "error": exc.message}
        previews.append(view.secrets.redact({**entry, "channel_index": i}))
    return previews


def _mask_missing(value: Any, ctx: NodeContext) -> Any:
    """Replace references that cannot be resolved here (unset variable, no secret store) by ***."""
    import os

    if isinstance(value, str) and "${" in value:

        def mask(match) -> str:
            kind, name, default = match.group(1), match.group(2), match.group(3)
            if kind == "secret":
                return match.group(0) if ctx.secret_lookup else REDACTED
            return match.group(0) if os.environ.get(name) or default is not None else REDACTED

        return REFERENCE.sub(mask, value)
    if isinstance(value, dict):
        return {k: _mask_missing(v, ctx) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_missing(v, ctx) for v in value]
    return value


def _one_line(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'config'}: {err['msg']}" for err in errors)
