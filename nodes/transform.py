"""`transform` node: reshape earlier outputs with JMESPath (extract, filter, map, compute)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nodes.base import NodeContext
from nodes.errors import ConfigError
from nodes.jmes import compile_expression, search

PRIORITIES = ("critical", "high", "medium", "low")


class Config(BaseModel):
    """Steps run in order: source → extract → filter_priority → mapping → expression.

    The output is the mapping's object, or the last step's value when that is an
    object, else `{"value": ...}`.
    """

    model_config = ConfigDict(extra="forbid")

    source_node: str | None = Field(
        default=None, description="Node whose output is the input (default: the whole run context)."
    )
    extract: str | None = Field(default=None, description="JMESPath applied to the input first.")
    filter_priority: list[str] | None = Field(
        default=None,
        description="Keep only recommendations (or list items) with one of these priorities.",
    )
    mapping: dict[str, str] | None = Field(
        default=None,
        description="Output keys → JMESPath over the input (with `run`, `payload`, `nodes`, `incident`).",
    )
    expression: str | None = Field(
        default=None, description="JMESPath over the run context plus `input`, computed last."
    )

    @field_validator("extract", "expression")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_expression(value)
        return value

    @field_validator("mapping")
    @classmethod
    def _mapping_compiles(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for expr in (value or {}).values():
            compile_expression(expr)
        return value

    @field_validator("filter_priority", mode="before")
    @classmethod
    def _priorities(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        for item in value or []:
            if item not in PRIORITIES:
                raise ValueError(f"unknown priority {item!r} (known: {', '.join(PRIORITIES)})")
        return value


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    context = ctx.data()
    if config.source_node is not None:
        if config.source_node not in ctx.nodes:
            raise ConfigError(f"config.source_node: node {config.source_node!r} has no output")
        value: Any = ctx.nodes[config.source_node]
    else:
        value = context
    try:
        if config.extract:
            value = search(config.extract, value)
        if config.filter_priority:
            value = _filter(value, set(config.filter_priority))
        if config.mapping:
            scope = {**context, **value} if isinstance(value, dict) else {**context, "input": value}
            value = {key: search(expr, scope) for key, expr in config.mapping.items()}
        if config.expression:
            value = search(config.expression, {**context, "input": value})
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return value if isinstance(value, dict) else {"value": value}


def _filter(value: Any, keep: set[str]) -> Any:
    def matches(item: Any) -> bool:
        return isinstance(item, dict) and str(item.get("priority", "")).lower() in keep

    if isinstance(value, list):
        return [item for item in value if matches(item)]
    if isinstance(value, dict) and isinstance(value.get("recommendations"), list):
        return {**value, "recommendations": [r for r in value["recommendations"] if matches(r)]}
    return value
