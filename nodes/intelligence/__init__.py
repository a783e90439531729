"""AI analysis providers. `PROVIDERS` maps a provider name to its module.

A provider module holds a pydantic `Config`, `USES_PROMPT` and `analyze(config, ctx, prompt,
*, client=None) -> dict`, returning the analysis with its model and token counts or raising
`ProviderError`: `nodes.protocols.Provider` says each in full. `node.run` shapes that into
the node output and applies the fallback.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, cast

from nodes import unknown_name
from nodes.errors import DefinitionError

if TYPE_CHECKING:
    from nodes.protocols import Provider

__all__ = ["PROVIDERS", "get_provider"]

PROVIDERS: dict[str, str] = {
    "local": "nodes.intelligence.local",
    "openai": "nodes.intelligence.openai_chat",
    "anthropic": "nodes.intelligence.anthropic",
    "openai-compatible": "nodes.intelligence.compatible",
}


def get_provider(name: str) -> Provider:
    """The provider module called `name`; an unknown name lists the known ones."""
    try:
        return cast("Provider", import_module(PROVIDERS[name]))
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("intelligence provider", name, PROVIDERS)) from None
