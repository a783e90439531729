"""`notify` node: build one message from the run and deliver it to one or more channels."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from nodes.base import NodeContext
from nodes.errors import DefinitionError, DeliveryError, NodeError
from nodes.notify import get_driver
from nodes.notify.message import Message, build_message

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
    )


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    targets = config.targets()
    if len(targets) == 1:
        outcomes = [_deliver(config, targets[0], ctx)]
    else:
        with ThreadPoolExecutor(max_workers=min(32, len(targets))) as pool:
            outcomes = list(pool.map(lambda t: _deliver(config, t, ctx), targets))
    deliveries = [record for record, _ in outcomes]
    failures = [error for _, error in outcomes if error is not None]
    first = message_for(config, targets[0], ctx)
    output = {
        "message": first.as_dict(),
        "channels_attempted": len(targets),
        "channels_succeeded": len(targets) - len(failures),
        "deliveries": deliveries,
    }
    if failures:
        summary = "; ".join(f"{d['driver']}: {d['error']}" for d in deliveries if d.get("error"))
        raise DeliveryError(
            f"{len(failures)} of {len(targets)} channel(s) failed: {summary}",
            retryable=any(e.retryable for e in failures),
            retry_after=max((e.retry_after or 0 for e in failures), default=None) or None,
            details=output,
        )
    return output


def _deliver(config: Config, target: Channel, ctx: NodeContext):
    message = message_for(config, target, ctx)
    try:
        record = get_driver(target.driver).send(target.settings, message, ctx)
        return record, None
    except NodeError as exc:
        return {"driver": target.driver, "status": "failed", "error": exc.message}, exc
    except Exception as exc:  # a driver bug must not hide the other channels' outcome
        error = DeliveryError(f"{type(exc).__name__}: {exc}", retryable=True)
        return {"driver": target.driver, "status": "failed", "error": error.message}, error
