"""Triggers declared with a definition: cron and interval schedules, Prefect event triggers, the webhook.

The definition is the one place they are written: `pipeline serve` registers the schedules
and event triggers from here, and `pipeline deployments` writes the same into prefect.yaml
(`schedule_specs` and `event_trigger_specs` return them as prefect.yaml spells them). The
receiver runs only a definition that declares `{"webhook": {}}`. Cron strings and time zones
are checked here, without importing Prefect.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

from flows.parameters import Number, Parameter, ParameterError, resolve_parameters

__all__ = [
    "CronTrigger",
    "EventTrigger",
    "IntervalTrigger",
    "Trigger",
    "WebhookTrigger",
    "accepts_webhook",
    "cron_problem",
    "event_trigger_specs",
    "schedule_specs",
    "trigger_lines",
    "trigger_problems",
]

SCHEDULE_SOURCE = "schedule"
EVENT_SOURCE = "event"
_PAYLOAD_HELP = "The payload of the runs it starts (the pipeline's parameters)."


class CronTrigger(BaseModel):
    """Runs on a cron schedule, made by Prefect's scheduler."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cron: str = Field(
        description="Five fields (minute hour day-of-month month day-of-week), or @hourly, @daily, ..."
    )
    timezone: str = Field(default="UTC", description="The IANA time zone it runs in (`Europe/Berlin`).")
    parameters: dict[str, Any] = Field(default_factory=dict, description=_PAYLOAD_HELP)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        if value not in _timezones():
            raise ValueError(f"{value[:60]!r} is not an IANA time zone (for example UTC, America/New_York)")
        return value


class IntervalTrigger(BaseModel):
    """Runs every `interval_seconds`, made by Prefect's scheduler."""

    model_config = ConfigDict(extra="forbid", strict=True)

    interval_seconds: Number = Field(ge=1, le=366 * 86400, description="Seconds between runs.")
    parameters: dict[str, Any] = Field(default_factory=dict, description=_PAYLOAD_HELP)


class EventTrigger(BaseModel):
    """A Prefect deployment trigger: each matching event starts a run."""

    model_config = ConfigDict(extra="forbid", strict=True)

    event: str = Field(
        min_length=1,
        max_length=1024,
        description="The event name (`opsflow.alert.firing`); a trailing `*` matches a prefix.",
    )
    match: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description="Labels of the event's resource, each a value or a glob: "
        '`{"prefect.resource.name": "Disk*"}` (the alertname, in the receiver\'s alert events).',
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict,
        description=_PAYLOAD_HELP + " Strings may be Prefect templates over the event: "
        "`{{ event.resource.name }}`, `{{ event.payload.severity }}`.",
    )

    @field_validator("event")
    @classmethod
    def _name(cls, value: str) -> str:
        if any(c.isspace() for c in value):
            raise ValueError(f"{value[:80]!r}: an event name has no spaces (`opsflow.alert.firing`)")
        return value


class WebhookOptions(BaseModel):
    """No options yet: `{}`."""

    model_config = ConfigDict(extra="forbid")


class WebhookTrigger(BaseModel):
    """The receiver's HTTP routes may run this definition (without it they refuse, 403)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    webhook: WebhookOptions = Field(description="`{}`: `POST /pipeline` and `/definitions/NAME/execute`.")


_KINDS = {
    "cron": CronTrigger,
    "interval_seconds": IntervalTrigger,
    "event": EventTrigger,
    "webhook": WebhookTrigger,
}


def _kind(value: Any) -> str | None:
    """Which trigger `value` is: named by the one key each kind must have."""
    if isinstance(value, dict):
        return next((key for key in _KINDS if key in value), None)
    return next((key for key, model in _KINDS.items() if isinstance(value, model)), None)


Trigger = Annotated[
    Annotated[CronTrigger, Tag("cron")]
    | Annotated[IntervalTrigger, Tag("interval_seconds")]
    | Annotated[EventTrigger, Tag("event")]
    | Annotated[WebhookTrigger, Tag("webhook")],
    Discriminator(
        _kind,
        custom_error_type="trigger_kind",
        custom_error_message='a trigger is one of {"cron": ...}, {"interval_seconds": ...}, '
        '{"event": ...} or {"webhook": {}}',
    ),
]


# ---- cron, as Prefect (croniter) takes it: a conservative subset, so what passes here passes there

_MACROS = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_ITEM = re.compile(r"^(?P<base>\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:/(?P<step>[0-9]+))?$")


def cron_problem(expression: str) -> str | None:
    """Why `expression` is not a cron schedule Prefect runs (None when it is)."""
    parts = expression.split()
    if len(parts) == 1 and parts[0].lower() in _MACROS:
        return None
    if len(parts) != 5:
        fields = "minute hour day-of-month month day-of-week"
        return f"{expression[:80]!r}: {len(parts)} field(s); cron has 5 ({fields})"
    for text, (label, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in text.split(","):
            problem = _item_problem(item, low, high, names)
            if problem:
                return f"{expression[:80]!r}: {label} {item[:20]!r}: {problem}"
    return None


def _item_problem(item: str, low: int, high: int, names: dict[str, int]) -> str | None:
    found = _ITEM.match(item)
    if not found:
        return "not a value, range (a-b), step (*/n) or list (a,b)"
    step = found.group("step")
    if step is not None and int(step) == 0:
        return "a step is at least 1"
    base = found.group("base")
    if base == "*":
        return None
    bounds = []
    for value in base.split("-"):
        number = names.get(value.lower()) if not value.isdigit() else int(value)
        if number is None:
            return f"{value!r} is not a number{' or a name' if names else ''}"
        if not low <= number <= high:
            return f"{number} is outside {low}-{high}"
        bounds.append(number)
    if len(bounds) == 2 and bounds[0] > bounds[1]:
        return f"the range starts after it ends ({bounds[0]} > {bounds[1]})"
    return None


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) | {"UTC"}


# ---- what the definition's triggers mean for its runs and its deployment


def accepts_webhook(triggers: Sequence[Any]) -> bool:
    """Whether the receiver's HTTP routes may run the definition."""
    return any(isinstance(trigger, WebhookTrigger) for trigger in triggers)


def trigger_problems(triggers: Sequence[Any], parameters: Mapping[str, Parameter]) -> list[str]:
    """A schedule whose runs would all fail on their payload, and event triggers whose fixed values
    do not fit the parameters; an event's `{{ }}` values are only known when Prefect renders them."""
    problems: list[str] = []
    for index, trigger in enumerate(triggers):
        if isinstance(trigger, WebhookTrigger):
            continue
        given = trigger.parameters
        if isinstance(trigger, EventTrigger):
            templated = {k for k, v in given.items() if _rendered_by_prefect(v)}
            given = {k: v for k, v in given.items() if k not in templated}
            checked = {k: v for k, v in parameters.items() if k not in templated}
        else:
            checked = dict(parameters)
        try:
            resolve_parameters(checked, given)
        except ParameterError as exc:
            problems.extend(
                f"triggers[{index}]: parameters.{p.removeprefix('payload.')}" for p in exc.problems
            )
    return problems


def _rendered_by_prefect(value: Any) -> bool:
    """A value Prefect renders when the event arrives: a `{{ }}` string or a `__prefect_kind` object."""
    if isinstance(value, str):
        return "{{" in value
    if isinstance(value, dict):
        return "__prefect_kind" in value or any(_rendered_by_prefect(v) for v in value.values())
    return isinstance(value, list) and any(_rendered_by_prefect(v) for v in value)


def schedule_specs(triggers: Sequence[Any]) -> list[dict[str, Any]]:
    """The schedules, as prefect.yaml's `schedules:` entries (runs they make say `source: schedule`)."""
    specs: list[dict[str, Any]] = []
    for trigger in triggers:
        spec: dict[str, Any]
        if isinstance(trigger, CronTrigger):
            spec = {"cron": trigger.cron, "timezone": trigger.timezone, "active": True}
        elif isinstance(trigger, IntervalTrigger):
            spec = {"interval": trigger.interval_seconds, "active": True}
        else:
            continue
        parameters: dict[str, Any] = {"source": SCHEDULE_SOURCE}
        if trigger.parameters:
            parameters["payload"] = trigger.parameters
        specs.append({**spec, "parameters": parameters})
    return specs


def event_trigger_specs(name: str, triggers: Sequence[Any]) -> list[dict[str, Any]]:
    """The event triggers, as prefect.yaml's `triggers:` entries (Prefect deployment triggers)."""
    specs = []
    for index, trigger in enumerate(triggers, start=1):
        if not isinstance(trigger, EventTrigger):
            continue
        parameters: dict[str, Any] = {"definition": name, "source": EVENT_SOURCE}
        if trigger.parameters:
            parameters["payload"] = trigger.parameters
        specs.append(
            {
                "type": "event",
                "name": f"run-pipeline/{name} trigger {index}: {trigger.event}",
                "enabled": True,
                "expect": [trigger.event],
                "match": dict(trigger.match),
                "posture": "Reactive",
                "threshold": 1,
                "within": 0,
                "parameters": parameters,
            }
        )
    return specs


def trigger_lines(triggers: Sequence[Any]) -> list[str]:
    """`describe` and dry-run's `Triggers:` section (runs by hand are always possible)."""
    if not triggers:
        return []
    lines = ["Triggers:"]
    for trigger in triggers:
        if isinstance(trigger, CronTrigger):
            lines.append(f"  cron {trigger.cron!r} ({trigger.timezone})")
        elif isinstance(trigger, IntervalTrigger):
            lines.append(f"  every {trigger.interval_seconds:g} s")
        elif isinstance(trigger, EventTrigger):
            match = ", ".join(f"{k}={v}" for k, v in trigger.match.items())
            lines.append(f"  event {trigger.event}" + (f" where {match}" if match else ""))
        else:
            lines.append("  webhook (POST /pipeline, /definitions/NAME/execute)")
    return lines
