"""intelligence node, offline parts: local rules, prompt building and budget, redaction, schema, config."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.base import NodeContext, RunInfo, Secrets
from nodes.errors import ProviderError
from nodes.intelligence.analysis import JSON_SCHEMA, Analysis, Recommendation, parse_analysis
from nodes.intelligence.node import Config, required_settings, run
from nodes.intelligence.prompt import build_prompt, estimate_tokens
from nodes.intelligence.redact import redact_text
from nodes.intelligence.rules import THRESHOLDS


def make_ctx(nodes=None, incident=None, secrets=(), **kw) -> NodeContext:
    return NodeContext(
        run=RunInfo(trace_id="t-1", definition="test"),
        node_id="analyze",
        nodes=nodes or {},
        incident=incident,
        secrets=Secrets(set(secrets)),
        **kw,
    )


def host(cpu=10.0, memory=40.0, disk=50.0, per_cpu=0.2, path="/", processes=None):
    out = {
        "hostname": "web-1",
        "cpu": {"percent": cpu, "count": 4},
        "memory": {
            "percent": memory,
            "total": 8 << 30,
            "available": 1 << 30,
            "used": 7 << 30,
            "swap_percent": 0,
        },
        "disk": {"path": path, "percent": disk, "total": 100 << 30, "used": 95 << 30, "free": 5 << 30},
        "load": {"1m": per_cpu * 4, "5m": 1.0, "15m": 1.0, "per_cpu_1m": per_cpu},
    }
    if processes is not None:
        out["processes"] = {"count": len(processes), "top_memory": processes, "self_pid": 1}
    return out


PROCS = [
    {"pid": 42, "name": "java", "user": "app", "memory_percent": 61.5, "rss": 5 << 30},
    {"pid": 7, "name": "postgres", "user": "postgres", "memory_percent": 20.1, "rss": 1 << 30},
]


def alert(title, severity="critical", status="firing", **extra):
    return {
        "fingerprint": f"fp-{title}",
        "status": status,
        "severity": severity,
        "title": title,
        "description": extra.pop("description", ""),
        "labels": extra.pop("labels", {}),
        "annotations": extra.pop("annotations", {}),
        "source": "alertmanager",
        "starts_at": "2024-05-01T10:00:00Z",
        "ends_at": None,
        "generator_url": None,
    }


def incident(alerts, status="open", severity="critical", title="Incident"):
    return {
        "id": 1,
        "key": "k",
        "status": status,
        "severity": severity,
        "title": title,
        "alert_count": len(alerts),
        "alerts": alerts,
    }


def checks(*items, status=None):
    worst = status or ("critical" if any(c["status"] == "critical" for c in items) else "ok")
    return {"status": worst, "checks": list(items)}


def check(name, status, value, metric=None, message=None):
    return {
        "name": name,
        "metric": metric or name,
        "value": value,
        "status": status,
        "warning": 80,
        "critical": 90,
        "message": message or f"{name} is {value}",
    }


INSTANCE_DOWN = alert(
    "InstanceDown",
    labels={"alertname": "InstanceDown", "instance": "localhost:8081", "job": "node"},
    annotations={"summary": "node_exporter not responding", "runbook_url": "https://runbooks/instance-down"},
)

# (name, nodes, incident, severity, words the summary must contain, a recommendation title)
LOCAL_CASES = [
    (
        "memory critical names top processes",
        {"m": host(memory=95.2, processes=PROCS)},
        None,
        "critical",
        ["95.2", "java", "pid 42", "postgres"],
        "Inspect java (pid 42)",
    ),
    (
        "memory warning",
        {"m": host(memory=85.0)},
        None,
        "warning",
        ["Memory at 85.0%"],
        "Relieve memory pressure",
    ),
    (
        "disk critical names the mount",
        {"m": host(disk=93.0, path="/var")},
        None,
        "critical",
        ["Disk /var", "93.0%", "5.0 GiB free"],
        "Free space on /var",
    ),
    ("cpu critical", {"m": host(cpu=97.0)}, None, "critical", ["CPU at 97.0%"], "Find the busiest processes"),
    (
        "load per cpu warning",
        {"m": host(per_cpu=1.4)},
        None,
        "warning",
        ["per CPU"],
        "Check for I/O wait and runnable tasks",
    ),
    (
        "critical alert labels and annotations",
        {},
        incident([INSTANCE_DOWN]),
        "critical",
        ["InstanceDown", "instance=localhost:8081", "job=node", "node_exporter not responding"],
        "Follow the runbook for InstanceDown",
    ),
    (
        "resolved incident",
        {},
        incident([alert("InstanceDown", status="resolved")], status="resolved"),
        "info",
        ["Incident resolved"],
        "Confirm recovery",
    ),
    (
        "failed check",
        {"c": checks(check("api", "critical", 503, metric="http.status", message="HTTP 503"))},
        None,
        "critical",
        ["Check api is critical", "HTTP 503"],
        "Investigate api",
    ),
    (
        "warning alert about this host outranked by its critical disk",
        {"m": host(disk=99.0)},
        incident([alert("SlowRequests", severity="warning", labels={"instance": "web-1:9100"})]),
        "critical",
        ["Disk /", "Also: SlowRequests"],
        "Free space on /",
    ),
]


@pytest.mark.parametrize(
    ("nodes", "incident_", "severity", "words", "rec"),
    [case[1:] for case in LOCAL_CASES],
    ids=[case[0] for case in LOCAL_CASES],
)
def test_local_rules(nodes, incident_, severity, words, rec):
    out = run(Config.model_validate({}), make_ctx(nodes, incident_))
    assert out["severity"] == severity
    for word in words:
        assert word in out["summary"]
    assert rec in [r["title"] for r in out["recommendations"]]
    assert out["provider"] == "local" and out["model"] == "rules-v1"
    assert out["usage"] == {"input_tokens": 0, "output_tokens": 0}
    assert out["fallback_used"] is False and "fallback_reason" not in out
    assert out["probable_cause"]
    Analysis.model_validate(out)


@pytest.mark.parametrize(
    ("nodes", "incident_", "expected"),
    [
        (
            {"m": host(), "c": checks(check("mem", "ok", 40))},
            None,
            "No problems found in 1 check(s), host metrics.",
        ),
        ({}, None, "No problems found (no metrics, checks or alerts were collected)."),
        ({}, incident([]), "No problems found in the incident."),
    ],
)
def test_local_no_problem_says_so(nodes, incident_, expected):
    out = run(Config(), make_ctx(nodes, incident_))
    assert out["summary"] == expected
    assert out["severity"] == "info" and out["recommendations"] == []


def test_local_check_on_a_metric_already_found_is_not_repeated():
    nodes = {"m": host(memory=95.0), "c": checks(check("memory", "critical", 95.0, metric="memory.percent"))}
    out = run(Config(), make_ctx(nodes))
    assert "Also" not in out["summary"]


def test_local_alert_storm_is_summarised():
    alerts = [alert(f"A{i}", severity="warning") for i in range(10)] + [alert("Boom")]
    out = run(Config(), make_ctx({}, incident(alerts)))
    assert out["summary"].startswith("Boom")
    assert "8 more firing alert(s)" in out["summary"]
    assert len(out["recommendations"]) <= 8


def test_local_is_deterministic():
    ctx = make_ctx({"m": host(memory=96, disk=91, processes=PROCS)}, incident([INSTANCE_DOWN]))
    assert run(Config(), ctx) == run(Config(), ctx)


def _expected(key, value):
    warning, critical = THRESHOLDS[key]
    return "critical" if value >= critical else "warning" if value >= warning else "info"


@settings(max_examples=60, deadline=None)
@given(
    cpu=st.floats(0, 100),
    memory=st.floats(0, 100),
    disk=st.floats(0, 100),
    load=st.floats(0, 8),
)
def test_local_severity_is_the_worst_threshold_crossed(cpu, memory, disk, load):
    out = run(Config(), make_ctx({"m": host(cpu=cpu, memory=memory, disk=disk, per_cpu=load)}))
    levels = [
        _expected("cpu", cpu),
        _expected("memory", memory),
        _expected("disk", disk),
        _expected("load", load),
    ]
    worst = min(levels, key=["critical", "warning", "info"].index)
    assert out["severity"] == worst
    assert (out["summary"].startswith("No problems found")) == (worst == "info")


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


# --- schema --------------------------------------------------------------------------------------


def test_json_schema_is_strict_and_matches_the_model():
    assert set(JSON_SCHEMA["required"]) == set(JSON_SCHEMA["properties"]) == set(Analysis.model_fields)
    rec = JSON_SCHEMA["properties"]["recommendations"]["items"]
    assert set(rec["required"]) == set(rec["properties"]) == set(Recommendation.model_fields)
    assert JSON_SCHEMA["additionalProperties"] is False and rec["additionalProperties"] is False


GOOD = {
    "summary": "s",
    "probable_cause": "c",
    "severity": "warning",
    "recommendations": [{"title": "t", "description": "d", "priority": "high"}],
}


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        f"```json\n{json.dumps(GOOD)}\n```",
        f"Here is the analysis:\n{json.dumps(GOOD)}\nThanks.",
    ],
)
def test_parse_tolerates_fences_and_prose(text):
    assert parse_analysis(text, where="t").model_dump() == GOOD


def test_parse_maps_aliases_and_plain_recommendations():
    got = parse_analysis(
        json.dumps({"summary": "s", "severity": "ERROR", "suggested_actions": ["restart"]}), where="t"
    )
    assert got.severity == "critical"
    assert got.recommendations[0].title == "restart" and got.recommendations[0].priority == "medium"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json at all",
        "[1, 2]",
        '{"severity": "warning"}',
        '{"summary": "s", "severity": "apocalyptic"}',
    ],
)
def test_parse_rejects_what_is_not_an_analysis(text):
    with pytest.raises(ProviderError) as info:
        parse_analysis(text, where="openai")
    assert info.value.retryable and info.value.message.startswith("openai: ")


# --- config --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"provider": "gemini"},
            "unknown intelligence provider 'gemini' (known: anthropic, local, openai, openai-compatible)",
        ),
        ({"model": "gpt-4o"}, "local.model: Extra inputs are not permitted"),
        ({"provider": "openai", "auth": "bearer"}, "openai.auth: Extra inputs are not permitted"),
        (
            {"provider": "anthropic", "auth": "basic"},
            "anthropic.auth: Input should be 'x-api-key' or 'bearer'",
        ),
        ({"provider": "openai-compatible", "model": "llama3"}, "openai-compatible.base_url: Field required"),
        ({"provider": "openai", "fallback": "nope"}, "unknown intelligence provider 'nope'"),
        (
            {"provider": "openai", "fallback": {"provider": "local", "model": "x"}},
            "local.model: Extra inputs",
        ),
        ({"max_input_tokens": 5}, "greater than or equal to 100"),
    ],
)
def test_config_is_validated_per_provider(config, message):
    with pytest.raises(ValueError, match=None) as info:
        Config.model_validate(config)
    assert message in str(info.value)


def test_config_passes_settings_to_the_provider():
    config = Config.model_validate(
        {
            "provider": "anthropic",
            "model": "claude-x",
            "auth": "bearer",
            "fallback": {"provider": "openai", "model": "gpt-4o"},
        }
    )
    assert config.settings.model == "claude-x" and config.settings.auth == "bearer"
    assert config.settings.max_output_tokens == 1024  # provider default kept
    assert config.fallback.provider == "openai" and config.fallback.settings.model == "gpt-4o"
    assert Config.model_validate({"fallback": "local"}).fallback.provider == "local"


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({}, []),
        ({"provider": "local"}, []),
        ({"provider": "openai"}, ["OPENAI_API_KEY"]),
        ({"provider": "openai", "api_key": "${MY_KEY}"}, []),
        ({"provider": "anthropic", "fallback": "openai"}, ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"]),
        (
            {"provider": "anthropic", "fallback": {"provider": "openai", "api_key": "k"}},
            ["ANTHROPIC_API_KEY"],
        ),
        ({"provider": "openai-compatible", "base_url": "http://127.0.0.1:1/v1", "model": "m"}, []),
        ({"provider": "gemini"}, []),
    ],
)
def test_required_settings(config, names):
    assert required_settings(config) == names


def test_estimate_tokens():
    assert estimate_tokens("") == 0 and estimate_tokens("abcd") == 1 and estimate_tokens("abcde") == 2
