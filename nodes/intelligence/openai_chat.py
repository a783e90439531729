"""`openai` provider: Chat Completions with strict structured output, through the `openai` SDK."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.errors import ConfigError, ProviderError
from nodes.intelligence.analysis import JSON_SCHEMA, parse_analysis
from nodes.intelligence.prompt import Prompt

__all__ = ["API_KEY_ENV", "USES_PROMPT", "Config", "analyze", "complete", "shared_client", "translate_error"]

API_KEY_ENV = "OPENAI_API_KEY"
USES_PROMPT = True
_RETRYABLE_STATUS = {408, 409, 429}


class Config(BaseModel):
    """Settings of an OpenAI chat completion call."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default="gpt-4o-mini", description="Model id; it must support json_schema output.")
    temperature: float | None = Field(
        default=None, ge=0, le=2, description="Sampling temperature; unset leaves the model's default."
    )
    max_output_tokens: int = Field(default=1024, ge=16, le=128_000, description="Cap on reply tokens.")
    timeout_seconds: float = Field(default=60, gt=0, le=600, description="Timeout of the HTTP call.")
    base_url: str | None = Field(default=None, description="API base URL (ending in /v1); unset: OpenAI.")
    api_key: SecretStr | None = Field(default=None, description=f"API key; unset reads {API_KEY_ENV}.")


def analyze(config: Config, ctx: NodeContext, prompt: Prompt, *, client: Any = None) -> dict[str, Any]:
    """One chat completion; `client` (an `openai.OpenAI`) lets tests and callers reuse a connection."""
    if client is None:
        client = shared_client(_api_key(config, ctx), config.base_url, config.timeout_seconds)
    return _call(client, config, prompt, ctx.time_left(config.timeout_seconds))


def _call(client: Any, config: Config, prompt: Prompt, timeout: float) -> dict[str, Any]:
    return complete(
        client,
        prompt,
        timeout=timeout,
        where="openai",
        model=config.model,
        temperature=config.temperature,
        max_output_tokens=config.max_output_tokens,
        structured=True,
        token_param="max_completion_tokens",
        key_hint=f"config.api_key or {API_KEY_ENV}",
    )


def _api_key(config: Config, ctx: NodeContext) -> str:
    key = config.api_key.get_secret_value() if config.api_key else os.environ.get(API_KEY_ENV, "")
    if not key:
        raise ConfigError(f"openai: no API key: set {API_KEY_ENV} or config.api_key")
    ctx.secrets.add(key)
    return key


@lru_cache(maxsize=16)
def shared_client(api_key: str, base_url: str | None, timeout: float) -> Any:
    """An SDK client that never retries on its own: the node's Prefect retries do, visibly.

    Kept per (key, URL, timeout) for the life of the process: a new client builds an
    SSL context (~50 ms) and a new connection pool, which would dwarf the call itself.
    """
    import openai

    return openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0)


def complete(
    client: Any,
    prompt: Prompt,
    *,
    timeout: float,
    where: str,
    model: str,
    temperature: float | None,
    max_output_tokens: int,
    structured: bool,
    token_param: str,
    key_hint: str,
) -> dict[str, Any]:
    """Ask for the analysis and validate it; shared with `openai-compatible` servers.

    `timeout` is this call's own (the attempt's time left), whatever the client's default.
    """
    import openai

    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": prompt.system},
            {"role": "user", "content": prompt.user},
        ],
        token_param: max_output_tokens,
        "timeout": timeout,
    }
    if temperature is not None:
        kwargs["temperature"] = temperature
    if structured:
        kwargs["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "incident_analysis", "strict": True, "schema": JSON_SCHEMA},
        }
    try:
        completion = client.chat.completions.create(**kwargs)
    except openai.OpenAIError as exc:
        raise translate_error(exc, where=where, key_hint=key_hint) from exc
    if not completion.choices:
        raise ProviderError(f"{where}: reply has no choices", retryable=True)
    choice = completion.choices[0]
    message = choice.message
    if getattr(message, "refusal", None):
        raise ProviderError(f"{where}: the model refused to answer: {message.refusal}", retryable=False)
    if choice.finish_reason == "length":
        raise ProviderError(
            f"{where}: reply cut off at max_output_tokens={max_output_tokens}; "
            "raise it or shorten the prompt",
            retryable=False,
        )
    if choice.finish_reason == "content_filter":
        raise ProviderError(f"{where}: reply withheld by the content filter", retryable=False)
    analysis = parse_analysis(message.content, where=where)
    usage = completion.usage
    return {
        "analysis": analysis,
        "model": completion.model or model,
        "input_tokens": getattr(usage, "prompt_tokens", 0) or 0,
        "output_tokens": getattr(usage, "completion_tokens", 0) or 0,
    }


def translate_error(exc: Exception, *, where: str, key_hint: str) -> ProviderError:
    """An SDK error as a ProviderError that says whether another try can help."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"{where}: request timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(f"{where}: cannot connect: {exc}", retryable=True)
    if not isinstance(exc, openai.APIStatusError):
        return ProviderError(f"{where}: {type(exc).__name__}: {exc}", retryable=False)
    status = exc.status_code
    code = getattr(exc, "code", None) or getattr(exc, "type", None)
    details = {"status": status, "code": code}
    if status == 401:
        return ProviderError(
            f"{where}: authentication failed (HTTP 401, {code}): check {key_hint}", details=details
        )
    if status == 403:
        return ProviderError(
            f"{where}: permission denied (HTTP 403, {code}): {_message(exc)}", details=details
        )
    if status == 429 and "insufficient_quota" in (getattr(exc, "code", None), getattr(exc, "type", None)):
        return ProviderError(
            f"{where}: quota exhausted (HTTP 429 insufficient_quota): check plan and billing", details=details
        )
    retryable = status in _RETRYABLE_STATUS or status >= 500
    what = "rate limited" if status == 429 else "server error" if status >= 500 else "request rejected"
    return ProviderError(
        f"{where}: {what} (HTTP {status}{f', {code}' if code else ''}): {_message(exc)}",
        retryable=retryable,
        retry_after=retry_after(exc.response.headers),
        details=details,
    )


def _message(exc: Any) -> str:
    body = exc.body if isinstance(getattr(exc, "body", None), dict) else {}
    text = body.get("message") or (body.get("error") or {}).get("message") if body else None
    return str(text or exc.message or "")[:300]


def retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` / numeric `retry-after`; HTTP dates are ignored."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None
