"""What the AI provider tests share: canned OpenAI and Anthropic replies, the incident they analyse.

The fake provider API they call is the `fake` fixture in tests/conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from nodes.base import NodeContext, RunInfo, Secrets
from nodes.intelligence.node import Config

__all__ = ["ANALYSIS", "bodies", "claude", "completion", "fixture", "make_ctx", "openai_config"]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ai"
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
