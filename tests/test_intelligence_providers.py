"""What every intelligence provider call goes through, against a fake API on 127.0.0.1.

Retries across attempts, fallback to another provider, redaction before anything is
sent, the input budget, and a key given as a reference. The providers' own requests and
errors are in test_intelligence_openai.py and test_intelligence_anthropic.py.
"""

from __future__ import annotations

import json

import pytest
from support.provider_fakes import ANALYSIS, bodies, completion, fixture, make_ctx, openai_config
from werkzeug import Request, Response

import nodes
from nodes.base import NodeContext
from nodes.errors import ProviderError
from nodes.intelligence.node import Config, run
from nodes.runtime import execute_node

pytestmark = pytest.mark.usefixtures("no_env_keys")


# --- retries and fallback ------------------------------------------------------------------------


def test_retry_then_success_across_attempts(fake):
    fake.expect_ordered_request("/v1/chat/completions").respond_with_json(
        fixture("openai-error-500-server-error.json"), status=500
    )
    fake.expect_ordered_request("/v1/chat/completions").respond_with_json(completion())
    config = openai_config(fake, fallback="local")
    with pytest.raises(ProviderError) as info:  # attempt 1 of 3: raise, let Prefect retry
        run(config, make_ctx(attempt=1, max_attempts=3))
    assert info.value.retryable
    out = run(config, make_ctx(attempt=2, max_attempts=3))
    assert out["provider"] == "openai" and out["fallback_used"] is False
    assert len(fake.log) == 2


def test_fallback_on_last_attempt_of_a_retryable_error(fake):
    fake.expect_request("/v1/chat/completions").respond_with_json(
        fixture("openai-error-500-server-error.json"), status=500
    )
    out = run(openai_config(fake, fallback="local"), make_ctx(attempt=3, max_attempts=3))
    assert out["provider"] == "local" and out["model"] == "rules-v1"
    assert out["fallback_used"] is True and "server error (HTTP 500" in out["fallback_reason"]
    assert "InstanceDown" in out["summary"]


def test_fallback_at_once_on_a_non_retryable_error(fake):
    fake.expect_request("/v1/chat/completions").respond_with_json(
        fixture("openai-error-429-insufficient-quota.json"), status=429
    )
    out = run(openai_config(fake, fallback="local"), make_ctx(attempt=1, max_attempts=3))
    assert out["fallback_used"] is True and "quota exhausted" in out["fallback_reason"]


def test_fallback_when_the_key_is_missing():
    out = run(Config.model_validate({"provider": "openai", "fallback": "local"}), make_ctx())
    assert out["provider"] == "local" and "OPENAI_API_KEY" in out["fallback_reason"]


def test_fallback_to_another_provider_that_fails_too(fake):
    fake.expect_request("/v1/chat/completions").respond_with_json(
        fixture("openai-error-401-invalid-api-key.json"), status=401
    )
    fake.expect_request("/v1/messages").respond_with_json(
        fixture("anthropic-error-529-overloaded.json"), status=529
    )
    config = openai_config(
        fake, fallback={"provider": "anthropic", "base_url": fake.url_for(""), "api_key": "ak-1"}
    )
    with pytest.raises(ProviderError) as info:
        run(config, make_ctx())
    assert "authentication failed" in info.value.message
    assert "fallback anthropic failed too: anthropic: HTTP 529 overloaded_error" in info.value.message
    assert info.value.retryable


# --- redaction end to end ----------------------------------------------------------------------------

LEAKS = [
    "hunter2-run-secret",
    "sk-proj-ABCDEFGHIJKLMNOPQRSTuvwx1234",
    "AKIAIOSFODNN7EXAMPLE",
    "pa55word",
    "abcdefghijklmnopqrstuvwxyz012345",
]


def leaky_ctx(**kw) -> NodeContext:
    ctx = make_ctx(secrets={"hunter2-run-secret"}, **kw)
    ctx.incident["alerts"][0]["annotations"] = {
        "dsn": "postgres://app:pa55word@db:5432/prod",
        "key": "sk-proj-ABCDEFGHIJKLMNOPQRSTuvwx1234",
        "aws": "AKIAIOSFODNN7EXAMPLE",
        "auth": "Bearer abcdefghijklmnopqrstuvwxyz012345",
        "note": "operator password hunter2-run-secret",
    }
    return ctx


def guard(request: Request) -> Response:
    """The fake provider refuses any request that carries a secret."""
    raw = request.get_data(as_text=True)
    leaked = [s for s in LEAKS if s in raw]
    if leaked:
        return Response(
            json.dumps({"error": {"message": f"leaked {leaked}", "type": "leak"}}),
            400,
            content_type="application/json",
        )
    return Response(json.dumps(completion()), 200, content_type="application/json")


def test_no_secret_reaches_the_provider(fake):
    fake.expect_request("/v1/chat/completions").respond_with_handler(guard)
    out = run(openai_config(fake), leaky_ctx())
    assert out["provider"] == "openai"
    (sent,) = bodies(fake)
    assert "postgres://app:***@db" in sent["messages"][1]["content"]


def test_redact_false_sends_the_prompt_as_is(fake):
    fake.expect_request("/v1/chat/completions").respond_with_handler(guard)
    with pytest.raises(ProviderError, match="leaked"):
        run(openai_config(fake, redact=False), leaky_ctx())


def test_budget_trims_what_is_sent(fake):
    fake.expect_request("/v1/chat/completions").respond_with_json(completion())
    ctx = make_ctx()
    ctx.nodes["dump"] = {"rows": ["x" * 100] * 200}
    out = run(openai_config(fake, max_input_tokens=400), ctx)
    assert out["prompt_trimmed"] is True
    (sent,) = bodies(fake)
    text = "".join(m["content"] for m in sent["messages"])
    assert len(text) <= 400 * 4
    assert "context trimmed" in text and "InstanceDown" in text and "xxxx" not in text


def test_execute_node_resolves_the_key_reference_and_keeps_it_out(fake, monkeypatch):
    monkeypatch.setitem(nodes.NODE_TYPES, "intelligence", "nodes.intelligence.node")
    monkeypatch.setenv("TEST_INTEL_KEY", "sk-resolved-0123456789abcdef")
    fake.expect_request(
        "/v1/chat/completions", headers={"Authorization": "Bearer sk-resolved-0123456789abcdef"}
    ).respond_with_json(completion())
    ctx = make_ctx()
    ctx.incident["alerts"][0]["description"] = "key in use: sk-resolved-0123456789abcdef"
    result = execute_node(
        "analyze",
        "intelligence",
        {"provider": "openai", "base_url": fake.url_for("/v1"), "api_key": "${TEST_INTEL_KEY}"},
        ctx,
    )
    assert result["output"]["summary"] == ANALYSIS["summary"]
    assert "sk-resolved" not in fake.log[0][0].get_data(as_text=True)
