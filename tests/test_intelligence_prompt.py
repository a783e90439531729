"""intelligence node, offline: the prompt built from a run, trimmed to its input budget, redacted."""

from __future__ import annotations

import pytest
from support.intelligence_inputs import alert, check, checks, host, incident, make_ctx

from nodes.intelligence.prompt import build_prompt, estimate_tokens
from nodes.intelligence.redact import redact_text

# --- prompt --------------------------------------------------------------------------------------


def big_ctx(n_procs=500, n_alerts=200, **kw):
    procs = [
        {"pid": i, "name": f"proc{i}", "user": "u", "memory_percent": round(50 - i * 0.05, 2), "rss": i}
        for i in range(n_procs)
    ]
    alerts = [alert(f"Warn{i}", severity="warning", description="x" * 60) for i in range(n_alerts - 1)]
    alerts.append(alert("DatabaseDown", labels={"instance": "db-1"}, annotations={"summary": "db is down"}))
    nodes = {
        "m": host(memory=95, processes=procs),
        "c": checks(check("api", "critical", 503), *[check(f"ok{i}", "ok", 1) for i in range(50)]),
        "fetch": {"rows": list(range(2000))},
    }
    return make_ctx(nodes, incident(alerts), **kw)


def test_prompt_contains_the_run_most_severe_first():
    prompt = build_prompt(big_ctx(n_procs=3, n_alerts=3))
    assert not prompt.trimmed
    text = prompt.user
    for part in (
        "## Incident",
        "## Firing critical alerts",
        "## Other alerts",
        "## Failed checks",
        "## Host metrics",
        "## Top processes",
        "## Passing checks",
        "## Earlier node outputs",
        "DatabaseDown",
        "proc0",
        "[critical] api",
    ):
        assert part in text
    assert text.index("DatabaseDown") < text.index("Warn0")
    assert "Reply with one JSON object" in prompt.system


def test_prompt_extra_instructions_are_appended():
    prompt = build_prompt(make_ctx(), instructions="Answer in French.")
    assert prompt.system.endswith("Additional instructions:\nAnswer in French.")


@pytest.mark.parametrize("budget", [300, 1000, 3000, 8000])
def test_prompt_budget_trims_least_important_first(budget):
    ctx = big_ctx()
    full = build_prompt(ctx)
    prompt = build_prompt(ctx, max_input_tokens=budget)
    assert full.estimated_tokens > 8000 and not full.trimmed
    assert prompt.trimmed
    assert prompt.estimated_tokens <= budget
    assert "context trimmed to fit the input budget" in prompt.user
    assert "Earlier node outputs" in prompt.dropped  # least important goes first
    if budget >= 1000:
        # the critical alert and the failed check survive while processes and healthy checks go
        assert "DatabaseDown" in prompt.user and "[critical] api" in prompt.user
        assert "## Host metrics" in prompt.user
        assert "Passing checks" in prompt.dropped
        assert "## Top processes" not in prompt.user or "proc499" not in prompt.user


def test_prompt_under_budget_is_not_trimmed():
    prompt = build_prompt(big_ctx(n_procs=2, n_alerts=2), max_input_tokens=100_000)
    assert not prompt.trimmed and "trimmed" not in prompt.user


SECRETS_IN_ALERT = {
    "run secret": "hunter2-run-secret",
    "bearer": "Bearer abcdefghijklmnopqrstuvwxyz012345",
    "openai key": "sk-proj-ABCDEFGHIJKLMNOPQRSTuvwx1234",
    "aws key": "AKIAIOSFODNN7EXAMPLE",
    "url password": "postgres://app:pa55word@db:5432/prod",
    "password=": "password=letmein99",
}


def secret_ctx():
    annotations = {f"note{i}": value for i, value in enumerate(SECRETS_IN_ALERT.values())}
    return make_ctx({}, incident([alert("Leaky", annotations=annotations)]), secrets={"hunter2-run-secret"})


def test_prompt_is_redacted():
    prompt = build_prompt(secret_ctx())
    for needle in (
        "hunter2-run-secret",
        "abcdefghijklmnopqrstuvwxyz012345",
        "sk-proj-",
        "AKIAIOSFODNN7EXAMPLE",
        "pa55word",
        "letmein99",
    ):
        assert needle not in prompt.user
    assert "postgres://app:***@db:5432/prod" in prompt.user and "password=***" in prompt.user
    assert prompt.redactions == len(SECRETS_IN_ALERT)


def test_prompt_redact_false_opts_out():
    prompt = build_prompt(secret_ctx(), redact=False)
    assert "letmein99" in prompt.user and "hunter2-run-secret" in prompt.user and prompt.redactions == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abcdefghij123", "Authorization: ***"),
        ('curl -H "Authorization: Basic dXNlcjpwYXNz" x', 'curl -H "Authorization: ***" x'),
        ("the token refresh failed", "the token refresh failed"),
        ('{"api_key": "abc123456"}', '{"api_key": "***"}'),
        ("DB_PASSWORD: s3cret!", "DB_PASSWORD: ***"),
        ("ghp_" + "a" * 36, "***"),
        ("xoxb-1234567890-abcdef", "***"),
        ("nothing secret here, 95% memory", "nothing secret here, 95% memory"),
    ],
)
def test_redact_shapes(text, expected):
    assert redact_text(text)[0] == expected


def test_estimate_tokens():
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
