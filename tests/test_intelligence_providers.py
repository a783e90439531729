"""intelligence node against real fake servers on 127.0.0.1: openai, anthropic, openai-compatible."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

import nodes
from nodes.base import NodeContext, RunInfo, Secrets
from nodes.errors import ConfigError, NodeError, ProviderError
from nodes.intelligence.node import Config, run
from nodes.runtime import execute_node

FIXTURES = Path(__file__).parent / "fixtures" / "ai"
ANALYSIS = {
    "summary": "Node exporter on localhost:8081 is unreachable.",
    "probable_cause": "The 08:20Z deploy stopped node_exporter.",
    "severity": "critical",
    "recommendations": [
        {"title": "Check node_exporter", "description": "systemctl status node_exporter", "priority": "high"}
    ],
}


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def completion(content=None, *, finish_reason="stop", refusal=None) -> dict:
    body = fixture("openai-chat-completions-response-structured.json")
    message = body["choices"][0]["message"]
    message["content"] = json.dumps(ANALYSIS) if content is None else content
    message["refusal"] = refusal
    body["choices"][0]["finish_reason"] = finish_reason
    return body


def claude(text=None, stop_reason="end_turn") -> dict:
    body = fixture("anthropic-messages-response.json")
    body["content"][0]["text"] = json.dumps(ANALYSIS) if text is None else text
    body["stop_reason"] = stop_reason
    return body


@pytest.fixture(scope="module")
def server():
    srv = HTTPServer(host="127.0.0.1", port=0)
    srv.start()
    yield srv
    srv.clear()
    srv.stop()


@pytest.fixture
def fake(server):
    server.clear()
    yield server
    server.check_assertions()


@pytest.fixture(autouse=True)
def no_env_keys(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)


def make_ctx(attempt=1, max_attempts=1, secrets=()) -> NodeContext:
    incident = {
        "id": 1,
        "key": "k",
        "status": "open",
        "severity": "critical",
        "title": "InstanceDown",
        "alert_count": 1,
        "alerts": [
            {
                "fingerprint": "f1",
                "status": "firing",
                "severity": "critical",
                "title": "InstanceDown",
                "description": "node_exporter not responding",
                "labels": {"alertname": "InstanceDown", "instance": "localhost:8081", "job": "node"},
                "annotations": {"summary": "down since deploy"},
                "source": "alertmanager",
                "starts_at": "2023-06-12T08:24:38Z",
                "ends_at": None,
                "generator_url": None,
            }
        ],
    }
    return NodeContext(
        run=RunInfo(trace_id="t"),
        node_id="analyze",
        incident=incident,
        attempt=attempt,
        max_attempts=max_attempts,
        secrets=Secrets(set(secrets)),
    )


def openai_config(fake, **extra) -> Config:
    return Config.model_validate(
        {
            "provider": "openai",
            "base_url": fake.url_for("/v1"),
            "api_key": "sk-test-key-0123456789abcdef",
            **extra,
        }
    )


def bodies(fake) -> list[dict]:
    return [json.loads(request.get_data()) for request, _ in fake.log]


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


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: a hung provider."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held, stop = [], threading.Event()

    def accept():
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


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
