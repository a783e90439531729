"""`openai-compatible` provider: any server speaking /v1/chat/completions (Ollama, vLLM, LiteLLM)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.intelligence.openai_chat import complete, shared_client
from nodes.intelligence.prompt import Prompt

__all__ = ["USES_PROMPT", "Config", "analyze"]

USES_PROMPT = True


class Config(BaseModel):
    """Settings of a chat completion call to a self-hosted or proxy server."""

    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="Server base URL including /v1, e.g. http://localhost:11434/v1.")
    model: str = Field(description="Model name as the server knows it, e.g. `llama3.1:8b`.")
    api_key: SecretStr | None = Field(default=None, description="Bearer key, when the server wants one.")
    structured_output: bool = Field(
        default=False,
        description="Send a strict json_schema response_format (only if the server supports it); "
        "otherwise JSON is asked for in the prompt and validated.",
    )
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_output_tokens: int = Field(default=1024, ge=16, le=128_000, description="Cap on reply tokens.")
    timeout_seconds: float = Field(
        default=120, gt=0, le=1800, description="Timeout of the HTTP call (local models can be slow)."
    )


def analyze(config: Config, ctx: NodeContext, prompt: Prompt, *, client: Any = None) -> dict[str, Any]:
    """One chat completion against `base_url`; `max_tokens`, which these servers all accept."""
    if client is None:
        key = config.api_key.get_secret_value() if config.api_key else ""
        if key:
            ctx.secrets.add(key)
        # the SDK insists on a key; servers without auth ignore the header
        client = shared_client(key or "not-needed", config.base_url, config.timeout_seconds)
    return _call(client, config, prompt, ctx.time_left(config.timeout_seconds))


def _call(client: Any, config: Config, prompt: Prompt, timeout: float) -> dict[str, Any]:
    return complete(
        client,
        prompt,
        timeout=timeout,
        where="openai-compatible",
        model=config.model,
        temperature=config.temperature,
        max_output_tokens=config.max_output_tokens,
        structured=config.structured_output,
        token_param="max_tokens",
        key_hint="config.api_key",
    )
