"""The anthropic provider against a fake Messages API on 127.0.0.1: both auth styles, replies, errors."""

from __future__ import annotations

import json

import pytest
from support.provider_fakes import ANALYSIS, claude, fixture, make_ctx
from werkzeug import Request, Response

from nodes.errors import ProviderError
from nodes.intelligence.node import Config, run

pytestmark = pytest.mark.usefixtures("no_env_keys")


# --- anthropic -------------------------------------------------------------------------------------


def claude_server(request: Request) -> Response:
    """Accepts both auth styles the Anthropic SDKs use, and nothing else."""
    key, version = request.headers.get("x-api-key"), request.headers.get("anthropic-version")
    bearer = request.headers.get("authorization", "")
    if not (
        (key == "ak-test" and version == "2023-06-01")
        or (bearer == "Bearer ak-test" and version == "2026-10-21")
    ):
        return Response(
            json.dumps(
                {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}
            ),
            401,
            content_type="application/json",
        )
    body = request.get_json()
    assert body["max_tokens"] == 700 and body["messages"][0]["role"] == "user"
    assert "JSON" in body["system"] and "InstanceDown" in body["messages"][0]["content"]
    reply = f"Here is my analysis:\n```json\n{json.dumps(ANALYSIS)}\n```"
    return Response(json.dumps(claude(reply)), 200, content_type="application/json")


@pytest.mark.parametrize(
    "auth", [{}, {"auth": "bearer", "anthropic_version": "2026-10-21"}], ids=["x-api-key", "bearer"]
)
def test_anthropic_both_auth_styles(fake, auth):
    fake.expect_request("/v1/messages", method="POST").respond_with_handler(claude_server)
    config = Config.model_validate(
        {
            "provider": "anthropic",
            "base_url": fake.url_for(""),
            "api_key": "ak-test",
            "max_output_tokens": 700,
            **auth,
        }
    )
    out = run(config, make_ctx())
    assert {k: out[k] for k in ANALYSIS} == ANALYSIS
    assert out["provider"] == "anthropic" and out["model"] == "claude-3-5-sonnet-20240620"
    assert out["usage"] == {"input_tokens": 2095, "output_tokens": 503}


def test_anthropic_wrong_auth_is_not_retryable(fake):
    fake.expect_request("/v1/messages").respond_with_handler(claude_server)
    config = Config.model_validate(
        {"provider": "anthropic", "base_url": fake.url_for(""), "api_key": "ak-test", "auth": "bearer"}
    )  # bearer with the old version: refused
    with pytest.raises(ProviderError, match="authentication failed \\(HTTP 401") as info:
        run(config, make_ctx())
    assert not info.value.retryable


@pytest.mark.parametrize(
    ("status", "body", "retryable", "message"),
    [
        (529, fixture("anthropic-error-529-overloaded.json"), True, "HTTP 529 overloaded_error: Overloaded"),
        (
            429,
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}},
            True,
            "HTTP 429",
        ),
        (503, {"type": "error", "error": {"type": "api_error", "message": "unavailable"}}, True, "HTTP 503"),
        (
            400,
            {"type": "error", "error": {"type": "invalid_request_error", "message": "bad model"}},
            False,
            "HTTP 400 invalid_request_error: bad model",
        ),
        (200, claude("no json here"), True, "not valid JSON"),
        (
            200,
            claude('{"summary": "cut', stop_reason="max_tokens"),
            False,
            "cut off at max_output_tokens=1024",
        ),
        (200, claude("", stop_reason="refusal"), False, "refused"),
    ],
)
def test_anthropic_errors(fake, status, body, retryable, message):
    fake.expect_request("/v1/messages").respond_with_json(body, status=status, headers={"retry-after": "3"})
    config = Config.model_validate(
        {"provider": "anthropic", "base_url": fake.url_for(""), "api_key": "ak-test"}
    )
    with pytest.raises(ProviderError) as info:
        run(config, make_ctx())
    assert info.value.retryable is retryable and message in info.value.message
    if status in (429, 529):
        assert info.value.retry_after == 3.0


def test_anthropic_key_from_environment(fake, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "ak-test")
    fake.expect_request("/v1/messages").respond_with_handler(claude_server)
    config = Config.model_validate(
        {"provider": "anthropic", "base_url": fake.url_for(""), "max_output_tokens": 700}
    )
    assert run(config, make_ctx())["provider"] == "anthropic"


def test_anthropic_unreachable_is_retryable(silent_port):
    config = Config.model_validate(
        {
            "provider": "anthropic",
            "base_url": f"http://127.0.0.1:{silent_port}",
            "api_key": "ak",
            "timeout_seconds": 0.3,
        }
    )
    with pytest.raises(ProviderError, match="timed out") as info:
        run(config, make_ctx())
    assert info.value.retryable
