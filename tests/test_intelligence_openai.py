"""The openai and openai-compatible providers against a fake API on 127.0.0.1: requests, replies, errors.

Retries, fallback, redaction and the input budget (provider-independent) are in
test_intelligence_providers.py; Anthropic in test_intelligence_anthropic.py.
"""

from __future__ import annotations

import json

import pytest
from support.provider_fakes import ANALYSIS, bodies, completion, fixture, make_ctx, openai_config
from werkzeug import Response

from nodes.errors import ConfigError, NodeError, ProviderError
from nodes.intelligence.node import Config, run

pytestmark = pytest.mark.usefixtures("no_env_keys")


# --- openai ---------------------------------------------------------------------------------------


def test_openai_structured_output(fake):
    fake.expect_request(
        "/v1/chat/completions",
        method="POST",
        headers={"Authorization": "Bearer sk-test-key-0123456789abcdef"},
    ).respond_with_json(completion())
    out = run(openai_config(fake, model="gpt-4o-mini", temperature=0, max_output_tokens=500), make_ctx())
    assert {k: out[k] for k in ANALYSIS} == ANALYSIS
    assert out["provider"] == "openai" and out["model"] == "gpt-4o-mini-2024-07-18"
    assert out["usage"] == {"input_tokens": 121, "output_tokens": 78}
    assert out["fallback_used"] is False and out["prompt_trimmed"] is False
    (sent,) = bodies(fake)
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0
    assert sent["max_completion_tokens"] == 500
    fmt = sent["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == [
        "summary",
        "probable_cause",
        "severity",
        "recommendations",
    ]
    system, user = sent["messages"]
    assert system["role"] == "system" and "JSON" in system["content"]
    assert user["role"] == "user" and "InstanceDown" in user["content"] and "job=node" in user["content"]


def test_openai_key_from_environment(fake, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0123456789abcdef")
    fake.expect_request(
        "/v1/chat/completions", headers={"Authorization": "Bearer sk-from-env-0123456789abcdef"}
    ).respond_with_json(completion())
    config = Config.model_validate({"provider": "openai", "base_url": fake.url_for("/v1")})
    assert run(config, make_ctx())["summary"] == ANALYSIS["summary"]


def test_openai_captured_reply_shape_is_accepted(fake):
    # the captured reply uses suggested_actions/confidence, not our field names
    fake.expect_request("/v1/chat/completions").respond_with_json(
        fixture("openai-chat-completions-response-structured.json")
    )
    out = run(openai_config(fake), make_ctx())
    assert out["severity"] == "critical"
    assert out["recommendations"][0]["title"] == "Check node_exporter service status on the host"


def test_openai_missing_key_is_a_config_error(fake):
    config = Config.model_validate({"provider": "openai", "base_url": fake.url_for("/v1")})
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY or config.api_key") as info:
        run(config, make_ctx())
    assert not info.value.retryable
    assert fake.log == []


ERRORS = [
    # (name, response, retryable, message part, retry_after)
    (
        "refusal",
        lambda: Response(
            json.dumps(fixture("openai-chat-completions-response-structured-refusal.json")),
            200,
            content_type="application/json",
        ),
        False,
        "refused to answer: I'm sorry",
        None,
    ),
    (
        "length",
        lambda: Response(
            json.dumps(completion('{"summary": "cut', finish_reason="length")),
            200,
            content_type="application/json",
        ),
        False,
        "cut off at max_output_tokens=1024",
        None,
    ),
    (
        "invalid json",
        lambda: Response(
            json.dumps(completion("I think the host is down")), 200, content_type="application/json"
        ),
        True,
        "not valid JSON",
        None,
    ),
    (
        "401",
        lambda: Response(
            json.dumps(fixture("openai-error-401-invalid-api-key.json")), 401, content_type="application/json"
        ),
        False,
        "authentication failed (HTTP 401, invalid_api_key): check config.api_key or OPENAI_API_KEY",
        None,
    ),
    (
        "429 quota",
        lambda: Response(
            json.dumps(fixture("openai-error-429-insufficient-quota.json")),
            429,
            content_type="application/json",
        ),
        False,
        "quota exhausted",
        None,
    ),
    (
        "429 rate limit",
        lambda: Response(
            json.dumps(
                {
                    "error": {
                        "message": "Rate limit reached",
                        "type": "requests",
                        "code": "rate_limit_exceeded",
                    }
                }
            ),
            429,
            headers={"retry-after": "7"},
            content_type="application/json",
        ),
        True,
        "rate limited (HTTP 429, rate_limit_exceeded)",
        7.0,
    ),
    (
        "500",
        lambda: Response(
            json.dumps(fixture("openai-error-500-server-error.json")), 500, content_type="application/json"
        ),
        True,
        "server error (HTTP 500",
        None,
    ),
    (
        "400",
        lambda: Response(
            json.dumps(
                {
                    "error": {
                        "message": "Invalid schema for response_format",
                        "type": "invalid_request_error",
                        "code": None,
                    }
                }
            ),
            400,
            content_type="application/json",
        ),
        False,
        "request rejected (HTTP 400, invalid_request_error): Invalid schema",
        None,
    ),
]


@pytest.mark.parametrize(
    ("make", "retryable", "message", "retry_after"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_openai_errors(fake, make, retryable, message, retry_after):
    fake.expect_request("/v1/chat/completions").respond_with_response(make())
    with pytest.raises(ProviderError) as info:
        run(openai_config(fake), make_ctx())
    assert info.value.retryable is retryable
    assert message in info.value.message
    assert info.value.retry_after == retry_after
    assert "sk-test-key" not in info.value.message
    assert len(fake.log) == 1  # the SDK does not retry on its own


def test_openai_timeout_is_retryable(silent_port):
    config = Config.model_validate(
        {
            "provider": "openai",
            "base_url": f"http://127.0.0.1:{silent_port}/v1",
            "api_key": "sk-x",
            "timeout_seconds": 0.3,
        }
    )
    with pytest.raises(ProviderError, match="openai: request timed out") as info:
        run(config, make_ctx())
    assert info.value.retryable


# --- openai-compatible -----------------------------------------------------------------------------------


def test_compatible_json_by_instruction(fake):
    fake.expect_request("/v1/chat/completions").respond_with_json(
        completion(f"Sure!\n```json\n{json.dumps(ANALYSIS)}\n```")
    )
    config = Config.model_validate(
        {
            "provider": "openai-compatible",
            "base_url": fake.url_for("/v1"),
            "model": "llama3.1:8b",
            "max_output_tokens": 300,
        }
    )
    out = run(config, make_ctx())
    assert out["provider"] == "openai-compatible" and out["severity"] == "critical"
    (sent,) = bodies(fake)
    assert "response_format" not in sent and sent["max_tokens"] == 300 and sent["model"] == "llama3.1:8b"


def test_compatible_structured_output_when_supported(fake):
    fake.expect_request(
        "/v1/chat/completions", headers={"Authorization": "Bearer vllm-key"}
    ).respond_with_json(completion())
    config = Config.model_validate(
        {
            "provider": "openai-compatible",
            "base_url": fake.url_for("/v1"),
            "model": "qwen",
            "structured_output": True,
            "api_key": "vllm-key",
        }
    )
    run(config, make_ctx())
    (sent,) = bodies(fake)
    assert sent["response_format"]["json_schema"]["strict"] is True


def test_compatible_server_error_is_retryable(fake):
    fake.expect_request("/v1/chat/completions").respond_with_data("upstream down", status=502)
    config = Config.model_validate(
        {"provider": "openai-compatible", "base_url": fake.url_for("/v1"), "model": "m"}
    )
    with pytest.raises(NodeError, match="openai-compatible: server error \\(HTTP 502") as info:
        run(config, make_ctx())
    assert info.value.retryable
