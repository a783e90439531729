"""intelligence node, offline parts: the local rules, parsing a reply into an analysis, config per provider.

Prompt building, its input budget and redaction are in test_intelligence_prompt.py.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.intelligence_inputs import alert, check, checks, host, incident, make_ctx

from nodes.errors import ProviderError
from nodes.intelligence.analysis import JSON_SCHEMA, Analysis, Recommendation, parse_analysis
from nodes.intelligence.node import Config, required_settings, run
from nodes.intelligence.rules import THRESHOLDS

PROCS = [
    {"pid": 42, "name": "java", "user": "app", "memory_percent": 61.5, "rss": 5 << 30},
    {"pid": 7, "name": "postgres", "user": "postgres", "memory_percent": 20.1, "rss": 1 << 30},
]


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
