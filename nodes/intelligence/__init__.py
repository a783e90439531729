"""AI analysis providers. `PROVIDERS` maps a provider name to its module.

A provider module holds a pydantic `Config` (extra="forbid", SecretStr for keys, a
description on every field), `USES_PROMPT` (False when it reads the run directly), and
`analyze(config, ctx, prompt, *, client=None) -> dict` returning
`{"analysis": schema.Analysis, "model", "input_tokens", "output_tokens"}`, or raising
`ProviderError` (retryable only when another try may succeed). `node.run` shapes that
into the node output and applies the fallback.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from nodes import unknown_name
from nodes.errors import DefinitionError

__all__ = ["PROVIDERS", "get_provider"]

PROVIDERS: dict[str, str] = {
    "local": "nodes.intelligence.local",
    "openai": "nodes.intelligence.openai_chat",
    "anthropic": "nodes.intelligence.anthropic",
    "openai-compatible": "nodes.intelligence.compatible",
}


def get_provider(name: str) -> ModuleType:
    """The provider module called `name`; an unknown name lists the known ones."""
    try:
        return import_module(PROVIDERS[name])
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("intelligence provider", name, PROVIDERS)) from None
