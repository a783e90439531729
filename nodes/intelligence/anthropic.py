"""`anthropic` provider: Claude through the Messages API over httpx, JSON by instruction, validated."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.errors import ConfigError, ProviderError
from nodes.intelligence.analysis import parse_analysis
from nodes.intelligence.openai_chat import retry_after
from nodes.intelligence.prompt import Prompt

__all__ = ["API_KEY_ENV", "USES_PROMPT", "Config", "analyze"]

API_KEY_ENV = "ANTHROPIC_API_KEY"
USES_PROMPT = True
_RETRYABLE_STATUS = {408, 409, 429, 529}


class Config(BaseModel):
    """Settings of one Messages API call."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="claude-haiku-4-5", description="Claude model id.")
    temperature: float | None = Field(default=None, ge=0, le=1, description="Sampling temperature.")
    max_output_tokens: int = Field(default=1024, ge=16, le=64_000, description="`max_tokens` of the call.")
    timeout_seconds: float = Field(default=60, gt=0, le=600, description="Timeout of the HTTP call.")
    base_url: str = Field(default="https://api.anthropic.com", description="API base URL, without /v1.")
    api_key: SecretStr | None = Field(default=None, description=f"API key; unset reads {API_KEY_ENV}.")
    auth: Literal["x-api-key", "bearer"] = Field(
        default="x-api-key", description="Send the key as `x-api-key` or as `Authorization: Bearer`."
    )
    anthropic_version: str = Field(default="2023-06-01", description="The `anthropic-version` header.")


def analyze(config: Config, ctx: NodeContext, prompt: Prompt, *, client: Any = None) -> dict[str, Any]:
    """One Messages call; `client` is an optional `httpx.Client`."""
    import httpx

    key = config.api_key.get_secret_value() if config.api_key else os.environ.get(API_KEY_ENV, "")
    if not key:
        raise ConfigError(f"anthropic: no API key: set {API_KEY_ENV} or config.api_key")
    ctx.secrets.add(key)
    headers = {"anthropic-version": config.anthropic_version, "content-type": "application/json"}
    if config.auth == "bearer":
        headers["authorization"] = f"Bearer {key}"
    else:
        headers["x-api-key"] = key
    body: dict[str, Any] = {
        "model": config.model,
        "max_tokens": config.max_output_tokens,
        "system": prompt.system,
        "messages": [{"role": "user", "content": prompt.user}],
    }
    if config.temperature is not None:
        body["temperature"] = config.temperature
    url = config.base_url.rstrip("/") + "/v1/messages"
    client = client or _shared_http()
    try:
        response = client.post(url, json=body, headers=headers, timeout=ctx.time_left(config.timeout_seconds))
    except httpx.TimeoutException as exc:
        raise ProviderError("anthropic: request timed out", retryable=True) from exc
    except httpx.HTTPError as exc:
        raise ProviderError(
            f"anthropic: cannot reach {config.base_url}: {type(exc).__name__}", retryable=True
        ) from exc
    if response.status_code != 200:
        raise _status_error(response)
    try:
        data = response.json()
    except ValueError as exc:
        raise ProviderError("anthropic: reply is not JSON", retryable=True) from exc
    stop = data.get("stop_reason")
    if stop == "refusal":
        raise ProviderError("anthropic: the model refused to answer", retryable=False)
    if stop == "max_tokens":
        raise ProviderError(
            f"anthropic: reply cut off at max_output_tokens={config.max_output_tokens}; raise it",
            retryable=False,
        )
    text = "".join(b.get("text", "") for b in data.get("content") or [] if b.get("type") == "text")
    usage = data.get("usage") or {}
    return {
        "analysis": parse_analysis(text, where="anthropic"),
        "model": data.get("model") or config.model,
        "input_tokens": usage.get("input_tokens", 0),
        "output_tokens": usage.get("output_tokens", 0),
    }


@lru_cache(maxsize=1)
def _shared_http() -> Any:
    """One pooled client per process: a new one costs an SSL context (~50 ms) per call."""
    import httpx

    return httpx.Client()


def _status_error(response: Any) -> ProviderError:
    status = response.status_code
    try:
        error = (response.json() or {}).get("error") or {}
    except ValueError:
        error = {}
    kind = error.get("type") or "error"
    message = str(error.get("message") or response.reason_phrase)[:300]
    details = {"status": status, "code": kind}
    if status == 401:
        return ProviderError(
            f"anthropic: authentication failed (HTTP 401, {kind}): check config.api_key or {API_KEY_ENV}",
            details=details,
        )
    retryable = status in _RETRYABLE_STATUS or status >= 500
    return ProviderError(
        f"anthropic: HTTP {status} {kind}: {message}",
        retryable=retryable,
        retry_after=retry_after(response.headers),
        details=details,
    )
