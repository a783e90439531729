"""Typed pipeline parameters: the `parameters` block, a payload checked against it, and its JSON Schema.

A definition declares its inputs (`"parallel_workers": {"type": "integer", "default": 4,
"minimum": 1, "maximum": 16}`); a run's payload is checked against them before any node
runs, every problem named at once, and templates and `when` see the values, defaults
filled in, as `params.<name>`. The same block is the deployment's parameter schema, so
the Prefect UI's custom-run form shows one typed field per parameter. Imports no Prefect.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from nodes.base import is_secret_setting
from nodes.errors import UsageError

if TYPE_CHECKING:
    from flows.definition import Pipeline

__all__ = [
    "PARAMETER_NAME",
    "Parameter",
    "ParameterError",
    "ParameterName",
    "Number",
    "deployment_parameter_schema",
    "parameter_lines",
    "parameters_for",
    "payload_schema",
    "resolve_parameters",
    "value_problems",
]

PARAMETER_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# `params.<name>` in JMESPath and Jinja: a name is an identifier
ParameterName = Annotated[str, StringConstraints(pattern=PARAMETER_NAME, max_length=64)]
# a JSON number: an int stays an int (`16`, not `16.0`, in messages and schemas); one error, not two
Number = Annotated[float, AfterValidator(lambda v: int(v) if v.is_integer() else v)]
ParameterType = Literal["string", "integer", "number", "boolean", "array", "object"]
_NUMERIC = ("integer", "number")
_ENUMERABLE = ("string", "integer", "number")
_ARTICLE = {"integer": "an integer", "array": "an array", "object": "an object"}


class ParameterError(UsageError):
    """A payload that does not fit the definition's parameters; `problems` names each one."""

    def __init__(self, definition: str, problems: list[str]):
        self.definition = definition
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"Payload does not fit the parameters of {definition!r}:\n{lines}")


class Items(BaseModel):
    """What each element of an `array` parameter must be."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: ParameterType = Field(description="The element type.")
    enum: list[Any] | None = Field(default=None, min_length=1, description="The values allowed.")
    minimum: Number | None = Field(default=None, description="Smallest value (numbers).")
    maximum: Number | None = Field(default=None, description="Largest value (numbers).")

    @model_validator(mode="after")
    def _consistent(self) -> Items:
        _raise_if(_spec_problems(self))
        return self


class Parameter(BaseModel):
    """One typed input of a pipeline, read in templates and `when` as `params.<name>`."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: ParameterType = Field(description="string, integer, number, boolean, array or object.")
    description: str = Field(default="", description="Shown in the Prefect UI's run form and `describe`.")
    required: bool = Field(default=False, description="A run without it is refused before any node runs.")
    default: Any = Field(default=None, description="The value when the payload has none.")
    enum: list[Any] | None = Field(
        default=None, min_length=1, description="The values allowed (string, integer, number)."
    )
    minimum: Number | None = Field(default=None, description="Smallest value (integer, number).")
    maximum: Number | None = Field(default=None, description="Largest value (integer, number).")
    items: Items | None = Field(default=None, description="For an array: what each element must be.")

    @model_validator(mode="after")
    def _consistent(self) -> Parameter:
        problems = _spec_problems(self)
        if self.items is not None and self.type != "array":
            problems.append("items applies to array parameters only")
        if self.default is not None:
            if self.required:
                problems.append("required and a default: a parameter with a default is optional; drop one")
            problems.extend(f"default: {p}" for p in value_problems(self, self.default, ""))
        _raise_if(problems)
        return self


def _spec_problems(spec: Parameter | Items) -> list[str]:
    """What contradicts itself in one parameter (or array element) spec."""
    problems: list[str] = []
    if spec.type not in _NUMERIC:
        problems.extend(
            f"{bound} applies to integer and number parameters only"
            for bound in ("minimum", "maximum")
            if getattr(spec, bound) is not None
        )
    elif spec.minimum is not None and spec.maximum is not None and spec.minimum > spec.maximum:
        problems.append(f"minimum {spec.minimum} is over maximum {spec.maximum}")
    if spec.enum is not None:
        if spec.type not in _ENUMERABLE:
            problems.append("enum applies to string, integer and number parameters only")
        else:
            bare = spec.model_copy(update={"enum": None})
            for value in spec.enum:
                problems.extend(f"enum value: {p}" for p in value_problems(bare, value, ""))
    return problems


def _raise_if(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(dict.fromkeys(problems)))


def value_problems(spec: Parameter | Items, value: Any, where: str) -> list[str]:
    """Why `value` does not fit `spec` (empty when it does); `where` prefixes each line."""
    prefix = f"{where}: " if where else ""
    kind = _kind(value)
    if not _fits_type(spec.type, value):
        return [f"{prefix}must be {_ARTICLE.get(spec.type, 'a ' + spec.type)}, got {kind}"]
    if spec.enum is not None and not any(_same(value, allowed) for allowed in spec.enum):
        allowed = ", ".join(_shown(v) for v in spec.enum[:10])
        more = ", ..." if len(spec.enum) > 10 else ""
        return [f"{prefix}{_shown(value, where)} is not one of {allowed}{more}"]
    problems = []
    if spec.type in _NUMERIC and spec.minimum is not None and value < spec.minimum:
        problems.append(f"{prefix}{value} is under the minimum {spec.minimum}")
    if spec.type in _NUMERIC and spec.maximum is not None and value > spec.maximum:
        problems.append(f"{prefix}{value} is over the maximum {spec.maximum}")
    items = getattr(spec, "items", None)
    if items is not None and isinstance(value, list):
        for index, item in enumerate(value):
            problems.extend(value_problems(items, item, f"{where}[{index}]"))
    return problems


def _fits_type(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":  # 4.0 is an integer in JSON Schema, as Prefect's form and API check it
        whole = isinstance(value, float) and value.is_integer()
        return whole or (isinstance(value, int) and not isinstance(value, bool))
    if kind == "number":
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if kind == "array":
        return isinstance(value, list)
    return isinstance(value, dict)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object" if isinstance(value, dict) else "a value"


def _same(value: Any, allowed: Any) -> bool:
    """Equal, and both or neither a boolean (`True == 1` in Python, not in JSON)."""
    return isinstance(value, bool) == isinstance(allowed, bool) and value == allowed


def _shown(value: Any, where: str = "") -> str:
    """A value for a message: short, and `***` when it looks like a credential."""
    if isinstance(value, str):
        if is_secret_setting(where.rsplit(".", 1)[-1], value):
            return "***"
        return repr(value if len(value) <= 40 else value[:40] + "…")
    return repr(value)


def resolve_parameters(
    parameters: Mapping[str, Parameter],
    payload: Mapping[str, Any] | None,
    *,
    definition: str = "inline",
    strict: bool = True,
) -> dict[str, Any]:
    """The values of every declared parameter, taken from the payload, defaults filled in.

    Raises ParameterError naming every missing or wrong value at once. An optional
    parameter with no default and no value is null. Keys the parameters do not name stay
    in the payload, unchecked (an alert payload carries many). `strict=False` never
    raises: a wrong or missing value is its default, or null (so a hook telling of a run that
    failed on its payload still renders its templates).
    """
    payload = payload or {}
    values: dict[str, Any] = {}
    problems: list[str] = []
    for name, spec in parameters.items():
        value = payload.get(name)
        found = value_problems(spec, value, f"payload.{name}") if value is not None else []
        if value is None and spec.required:
            found = [f"payload.{name}: missing (a required parameter)"]
        problems.extend(found)
        if spec.type == "integer" and isinstance(value, float) and not found:
            value = int(value)
        values[name] = spec.default if value is None or found else value
    if problems and strict:
        raise ParameterError(definition, problems)
    return values


def parameters_for(
    pipeline: Pipeline, payload: Mapping[str, Any] | None, *, strict: bool = True
) -> dict[str, Any]:
    """`params` of a run of `pipeline`: the flow calls this before any node runs (ParameterError
    names every problem); a hook or `run-stage` passes `strict=False` to show what it can."""
    return resolve_parameters(
        pipeline.definition.parameters, payload, definition=pipeline.name, strict=strict
    )


def payload_schema(parameters: Mapping[str, Parameter], position: int = 1) -> dict[str, Any]:
    """The JSON Schema of a payload carrying these parameters: one typed, described property each.

    Other keys stay allowed, as `resolve_parameters` allows them.
    """
    properties = {}
    for index, (name, spec) in enumerate(parameters.items()):
        prop: dict[str, Any] = {"title": name, "type": spec.type, "position": index}
        if spec.description:
            prop["description"] = spec.description
        if spec.default is not None:
            prop["default"] = spec.default
        for key in ("enum", "minimum", "maximum"):
            if getattr(spec, key) is not None:
                prop[key] = getattr(spec, key)
        if spec.items is not None:
            prop["items"] = spec.items.model_dump(exclude_none=True)
        properties[name] = prop
    schema: dict[str, Any] = {
        "title": "payload",
        "description": "The pipeline's parameters (templates read them as params.<name>).",
        "type": "object",
        "properties": properties,
        "position": position,
    }
    required = [name for name, spec in parameters.items() if spec.required]
    if required:
        schema["required"] = required
    return schema


def deployment_parameter_schema(
    flow_schema: Mapping[str, Any], parameters: Mapping[str, Parameter]
) -> dict[str, Any]:
    """The flow's parameter schema with `payload` typed by the definition's parameters.

    Prefect's run form (and, with `enforce_parameter_schema`, its API) uses this schema:
    without parameters the flow's own free `payload` object is kept.
    """
    schema = {**flow_schema, "properties": dict(flow_schema.get("properties") or {})}
    if parameters:
        current = schema["properties"].get("payload") or {}
        schema["properties"]["payload"] = payload_schema(parameters, current.get("position", 1))
    return schema


def parameter_lines(parameters: Mapping[str, Parameter]) -> list[str]:
    """`describe` and dry-run's `Parameters:` section: one line per parameter, then its description."""
    if not parameters:
        return []
    lines = [f"Parameters ({len(parameters)}):"]
    for name, spec in parameters.items():
        facts = [spec.type + (f" of {spec.items.type}" if spec.items else "")]
        if spec.required:
            facts.append("required")
        if spec.default is not None:
            facts.append(f"default {spec.default!r}")
        if spec.enum is not None:
            facts.append("one of " + ", ".join(repr(v) for v in spec.enum))
        if spec.minimum is not None or spec.maximum is not None:
            low = "" if spec.minimum is None else spec.minimum
            high = "" if spec.maximum is None else spec.maximum
            facts.append(f"{low}..{high}")
        lines.append(f"  {name} ({', '.join(facts)})")
        if spec.description:
            lines.append(f"     {spec.description}")
    return lines
