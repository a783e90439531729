"""`condition` node: evaluate a JMESPath expression over the run and pick the branch to run."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nodes.base import NodeContext
from nodes.errors import ConfigError
from nodes.jmes import compile_expression, search, truthy


def _ids(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class Config(BaseModel):
    """`if` is true (JMESPath truthiness) → the `then` nodes run, otherwise the `else` nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    if_: str = Field(alias="if", description="JMESPath expression over the run context.")
    then: str | list[str] = Field(description="Node id(s) to run when the expression is true.")
    else_: str | list[str] | None = Field(
        default=None, alias="else", description="Node id(s) to run otherwise."
    )

    @field_validator("if_")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_expression(value)
        return value

    def branches(self) -> tuple[list[str], list[str]]:
        return _ids(self.then), _ids(self.else_)


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    try:
        value = search(config.if_, ctx.data())
    except ValueError as exc:
        raise ConfigError(f"config.if: {exc}") from None
    then, otherwise = config.branches()
    result = truthy(value)
    return {
        "result": result,
        "branch": "then" if result else "else",
        "taken": then if result else otherwise,
        "not_taken": otherwise if result else then,
    }
