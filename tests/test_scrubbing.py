"""What is scrubbed from results and logs: values that are secrets, not every `${...}` setting."""

from __future__ import annotations

import pytest

from nodes.base import NodeContext, RunInfo, Secrets, is_secret_setting
from nodes.runtime import execute_node


def run_console(title: str, monkeypatch, **env: str) -> dict:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    ctx = NodeContext(run=RunInfo(trace_id="scrub"), secrets=Secrets())
    return execute_node("tell", "notify", {"driver": "console", "title": title}, ctx)["output"]


def test_an_ordinary_setting_does_not_mangle_the_text_it_appears_in(monkeypatch):
    output = run_console("${DEPLOY_ENV}: production deploy failed", monkeypatch, DEPLOY_ENV="prod")
    assert output["message"]["title"] == "prod: production deploy failed"


def test_a_token_is_scrubbed_whatever_its_setting_is_called(monkeypatch):
    token = "xoxb-2093847561-9182736450-AbCdEfGhIjKl"
    output = run_console("token ${THING}", monkeypatch, THING=token)
    assert token not in str(output) and "token ***" in output["message"]["title"]


@pytest.mark.parametrize(
    "name,value,secret",
    [
        ("ENVIRONMENT", "prod", False),
        ("SLACK_CHANNEL", "#ops", False),
        ("SMTP_HOST", "mail.example.com", False),
        ("PROMETHEUS_URL", "http://prometheus:9090", False),
        ("TEAM", "platform-team-2024-ops", False),
        ("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/x", True),
        ("ALERTMANAGER_URL", "http://admin:hunter2@am:9093", True),
        ("OPENAI_API_KEY", "x", True),
        ("SMTP_PASSWORD", "pw", True),
        ("HOOK", "http://127.0.0.1:5000/hooks/abcdefgh", True),
        ("ROUTING", "0123456789abcdef0123456789abcdef", True),
        ("BLOB", "dGhpcyBpcyBhIHNlY3JldA==", True),
    ],
)
def test_secret_settings_are_told_by_name_or_shape(name, value, secret):
    assert is_secret_setting(name, value) is secret
