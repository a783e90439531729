"""`intelligence` node: analyse the run with one provider (local rules or a model), with a fallback."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, ValidationError, model_validator

from nodes.base import NodeContext
from nodes.errors import DefinitionError, NodeError, ProviderError
from nodes.intelligence import get_provider
from nodes.intelligence.analysis import output
from nodes.intelligence.prompt import Prompt, build_prompt
from nodes.protocols import api_key_env

__all__ = ["Config", "Fallback", "required_settings", "run"]

# Settings that belong to the provider: passed to its own Config (which forbids the rest)
# only when given, so each provider keeps its own defaults.
_PROVIDER_FIELDS = (
    "model",
    "temperature",
    "max_output_tokens",
    "timeout_seconds",
    "base_url",
    "api_key",
    "structured_output",
)


def _provider_settings(provider: str, given: dict[str, Any]) -> BaseModel:
    try:
        module = get_provider(provider)
    except DefinitionError as exc:
        raise ValueError(str(exc)) from None
    try:
        return module.Config.model_validate(given)
    except ValidationError as exc:
        parts = []
        for err in exc.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"])
            parts.append(f"{provider}.{loc}: {err['msg']}" if loc else f"{provider}: {err['msg']}")
        raise ValueError("; ".join(parts)) from None


class Fallback(BaseModel):
    """A second provider, with its own settings, used when the first one fails for good."""

    model_config = ConfigDict(extra="allow")

    provider: str = Field(description="Provider name, e.g. `local`.")

    _settings: BaseModel = PrivateAttr()

    @model_validator(mode="after")
    def _validate_settings(self) -> Fallback:
        self._settings = _provider_settings(self.provider, dict(self.model_extra or {}))
        return self

    @property
    def settings(self) -> BaseModel:
        return self._settings


class Config(BaseModel):
    """An analysis: which provider, its settings, and what the prompt may contain.

    Provider settings other than the common ones below (e.g. anthropic's `auth`) are
    accepted as extra keys and validated by that provider's own model, which rejects
    anything it does not know.
    """

    model_config = ConfigDict(extra="allow")

    provider: str = Field(
        default="local", description="`local`, `openai`, `anthropic` or `openai-compatible`."
    )
    fallback: str | Fallback | None = Field(
        default=None,
        description="Provider (name, or object with `provider` and its settings) used when this one fails "
        "after its retries.",
    )
    prompt: str | None = Field(default=None, description="Extra instructions appended to the system prompt.")
    redact: bool = Field(default=True, description="Scrub secrets and secret-shaped strings from the prompt.")
    max_input_tokens: int | None = Field(
        default=None,
        ge=100,
        description="Prompt budget (~4 chars/token); the least important facts go first.",
    )
    model: str | None = Field(default=None, description="Model id (provider default when unset).")
    temperature: float | None = Field(default=None, ge=0, le=2, description="Sampling temperature.")
    max_output_tokens: int | None = Field(default=None, ge=16, description="Cap on reply tokens.")
    timeout_seconds: float | None = Field(default=None, gt=0, description="Timeout of one provider call.")
    base_url: str | None = Field(default=None, description="API base URL (required for openai-compatible).")
    api_key: SecretStr | None = Field(
        default=None, description="API key; unset reads the provider's env var."
    )
    structured_output: bool | None = Field(
        default=None, description="openai-compatible: the server supports json_schema response_format."
    )

    _settings: BaseModel = PrivateAttr()

    @model_validator(mode="after")
    def _validate_provider(self) -> Config:
        given = {name: getattr(self, name) for name in _PROVIDER_FIELDS if getattr(self, name) is not None}
        self._settings = _provider_settings(self.provider, {**given, **(self.model_extra or {})})
        if isinstance(self.fallback, str):
            self.fallback = Fallback(provider=self.fallback)
        return self

    @property
    def settings(self) -> BaseModel:
        return self._settings

    @property
    def resolved_fallback(self) -> Fallback | None:
        """`fallback` as an object: validation makes a bare name one, which the field's type cannot say."""
        return Fallback(provider=self.fallback) if isinstance(self.fallback, str) else self.fallback


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    """Analyse with the configured provider; on a final failure, with the fallback.

    A retryable failure before the last attempt is raised so the node's retries run;
    only a failure that no retry can fix (or the last attempt's) hands over.
    """
    prompts: dict[str, Prompt] = {}
    try:
        result = _analyze(config.provider, config.settings, config, _leaving_time_for(config, ctx), prompts)
    except NodeError as exc:
        fallback = config.resolved_fallback
        if fallback is None or (exc.retryable and not ctx.last_attempt):
            raise
        ctx.log.warning("%s failed (%s); falling back to %s", config.provider, exc.message, fallback.provider)
        try:
            result = _analyze(fallback.provider, fallback.settings, config, ctx, prompts)
        except NodeError as fb_exc:
            raise ProviderError(
                f"{exc.message}; fallback {fallback.provider} failed too: {fb_exc.message}",
                retryable=fb_exc.retryable,
                retry_after=fb_exc.retry_after,
            ) from fb_exc
        result["fallback_used"] = True
        result["fallback_from"] = config.provider
        result["fallback_reason"] = exc.message
        return result
    result["fallback_used"] = False
    return result


# what the local rules need of an attempt's time (milliseconds, in fact); another provider gets half
LOCAL_FALLBACK_SECONDS = 1.0


def _leaving_time_for(config: Config, ctx: NodeContext) -> NodeContext:
    """The primary provider's view of the attempt: a deadline early enough for the fallback to run.

    Without it a slow model used the node's whole timeout, the attempt was given up, and
    the fallback never ran: no analysis at all instead of the local one.
    """
    fallback = config.resolved_fallback
    if fallback is None or ctx.deadline is None:
        return ctx
    left = ctx.deadline - time.monotonic()
    keep = LOCAL_FALLBACK_SECONDS if fallback.provider == "local" else left / 2
    return dataclasses.replace(ctx, deadline=ctx.deadline - min(keep, left / 2))


def _analyze(
    name: str, settings: BaseModel, config: Config, ctx: NodeContext, prompts: dict[str, Prompt]
) -> dict[str, Any]:
    module = get_provider(name)
    prompt = None
    if module.USES_PROMPT:
        if "prompt" not in prompts:  # built once, shared by the fallback
            prompts["prompt"] = build_prompt(
                ctx,
                instructions=config.prompt,
                max_input_tokens=config.max_input_tokens,
                redact=config.redact,
            )
            p = prompts["prompt"]
            ctx.log.info(
                "prompt: ~%d tokens, %d redaction(s)%s",
                p.estimated_tokens,
                p.redactions,
                f", trimmed ({', '.join(p.dropped)})" if p.trimmed else "",
            )
        prompt = prompts["prompt"]
    found = module.analyze(settings, ctx, prompt)
    result = output(
        found["analysis"],
        provider=name,
        model=found["model"],
        input_tokens=found["input_tokens"],
        output_tokens=found["output_tokens"],
    )
    result["prompt_trimmed"] = bool(prompt and prompt.trimmed)
    return result


def required_settings(config: dict[str, Any]) -> list[str]:
    """Environment variables the raw `config` relies on implicitly (a provider key it does not set).

    `${...}` references are not listed: they are visible in the config itself.
    """
    if not isinstance(config, dict):
        return []
    names: list[str] = []
    targets = [(config.get("provider", "local"), config)]
    fallback = config.get("fallback")
    if isinstance(fallback, str):
        targets.append((fallback, {}))
    elif isinstance(fallback, dict):
        targets.append((fallback.get("provider"), fallback))
    for provider, settings in targets:
        try:
            module = get_provider(provider)
        except DefinitionError:
            continue
        env = api_key_env(module)
        if env and not settings.get("api_key") and env not in names:
            names.append(env)
    return names
