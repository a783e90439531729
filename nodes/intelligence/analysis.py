"""The one analysis shape every provider returns, its strict JSON Schema, and a validating parse."""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nodes.errors import ProviderError

__all__ = ["JSON_SCHEMA", "Analysis", "Recommendation", "output", "parse_analysis"]

Severity = Literal["critical", "warning", "info"]
Priority = Literal["critical", "high", "medium", "low"]

# Words models use instead of ours; anything else is a validation error.
_SEVERITY_ALIASES = {
    "error": "critical",
    "high": "critical",
    "major": "critical",
    "fatal": "critical",
    "warn": "warning",
    "medium": "warning",
    "minor": "warning",
    "low": "info",
    "ok": "info",
    "none": "info",
}
_PRIORITY_ALIASES = {"urgent": "critical", "p1": "critical", "p2": "high", "p3": "medium", "p4": "low"}


class Recommendation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    title: str = Field(description="What to do, in a few words.")
    description: str = Field(default="", description="How, and why it helps.")
    priority: Priority = Field(default="medium", description="How soon: critical, high, medium, low.")

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _PRIORITY_ALIASES.get(value, value)
        return value


class Analysis(BaseModel):
    """What a provider concluded; extra keys a model adds (confidence, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    summary: str = Field(description="One or two sentences: what is wrong, or that nothing is.")
    probable_cause: str = Field(default="", description="The most likely cause, or '' when unknown.")
    severity: Severity = Field(default="info", description="critical, warning or info.")
    recommendations: list[Recommendation] = Field(default_factory=list, description="Next steps.")

    @field_validator("severity", mode="before")
    @classmethod
    def _severity(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.strip().lower()
            return _SEVERITY_ALIASES.get(value, value)
        return value

    @field_validator("recommendations", mode="before")
    @classmethod
    def _plain_strings(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"title": v} if isinstance(v, str) else v for v in value]
        return value


_RECOMMENDATION_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "description": {"type": "string"},
        "priority": {"type": "string", "enum": ["critical", "high", "medium", "low"]},
    },
    "required": ["title", "description", "priority"],
    "additionalProperties": False,
}

# Written out rather than generated: strict structured output needs every property
# required and additionalProperties false, which pydantic's defaults do not produce.
JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string"},
        "probable_cause": {"type": "string"},
        "severity": {"type": "string", "enum": ["critical", "warning", "info"]},
        "recommendations": {"type": "array", "items": _RECOMMENDATION_SCHEMA},
    },
    "required": ["summary", "probable_cause", "severity", "recommendations"],
    "additionalProperties": False,
}

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_analysis(text: str | None, *, where: str) -> Analysis:
    """Validate a model's JSON reply; a reply that is not our shape is a retryable ProviderError.

    Retryable because sampling differs between calls: a second try usually parses,
    and the node's retry budget bounds the cost. Tolerates a ```json fence and prose
    around the object, which models asked for JSON by instruction often add.
    """
    if not text or not text.strip():
        raise ProviderError(f"{where}: empty reply, expected a JSON analysis", retryable=True)
    data = _load_object(text)
    if data is None:
        snippet = text.strip()[:120]
        raise ProviderError(f"{where}: reply is not valid JSON: {snippet!r}", retryable=True)
    if "recommendations" not in data and isinstance(data.get("suggested_actions"), list):
        data["recommendations"] = data["suggested_actions"]
    try:
        return Analysis.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'reply'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        raise ProviderError(
            f"{where}: reply does not match the analysis schema: {problems}", retryable=True
        ) from exc


def _load_object(text: str) -> dict | None:
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(data, dict):
            return data
    return None


def output(
    analysis: Analysis,
    *,
    provider: str,
    model: str,
    input_tokens: int = 0,
    output_tokens: int = 0,
) -> dict[str, Any]:
    """The node output for `analysis`; the node adds `fallback_used` / `fallback_reason` / `fallback_from`."""
    return {
        **analysis.model_dump(),
        "provider": provider,
        "model": model,
        "usage": {"input_tokens": int(input_tokens or 0), "output_tokens": int(output_tokens or 0)},
    }
