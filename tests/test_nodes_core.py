"""The core handlers called directly: context, check, transform, condition; and templating."""

from __future__ import annotations

import socket

import pytest
from support.ports import free_port

from nodes import check, condition, context, transform
from nodes.base import NodeContext, RunInfo, Secrets
from nodes.errors import ConfigError, NodeError, TemplateError
from nodes.runtime import execute_node
from nodes.templating import mask_references, referenced_names, resolve


def ctx(**fields) -> NodeContext:
    return NodeContext(run=RunInfo(trace_id="t1", definition="test"), node_id="n", **fields)


def test_context_collects_requested_groups():
    config = context.Config(
        include=["cpu", "memory", "disk", "load", "processes", "network"], top_processes=3
    )
    out = context.run(config, ctx())
    assert 0 <= out["cpu"]["percent"] <= 100 and out["cpu"]["count"] >= 1
    assert 0 < out["memory"]["percent"] < 100 and out["memory"]["total"] > out["memory"]["available"] > 0
    assert out["disk"]["path"] == "/" and out["disk"]["total"] > 0
    assert set(out["load"]) == {"1m", "5m", "15m", "per_cpu_1m"}
    assert out["processes"]["count"] > 1 and len(out["processes"]["top_memory"]) == 3
    top = out["processes"]["top_memory"]
    assert top == sorted(top, key=lambda p: p["memory_percent"], reverse=True)
    assert out["network"]["bytes_recv"] >= 0
    assert out["hostname"] == socket.gethostname()


def test_context_per_cpu_and_bad_disk_path():
    out = context.run(context.Config(include=["cpu"], per_cpu=True, cpu_interval=0), ctx())
    assert len(out["cpu"]["per_cpu"]) == out["cpu"]["count"]
    with pytest.raises(ConfigError, match="config.disk_path: cannot read '/no/such/mount'"):
        context.run(context.Config(include=["disk"], disk_path="/no/such/mount"), ctx())


@pytest.mark.parametrize(
    "value, op, expected",
    [
        (50, ">=", "ok"),
        (80, ">=", "warning"),
        (95, ">=", "critical"),
        (15, "<=", "warning"),
        (4, "<=", "critical"),
    ],
)
def test_threshold_levels(value, op, expected):
    levels = (80, 95) if op == ">=" else (20, 5)
    assert check.level(value, *levels, op) == expected


def test_check_thresholds_over_earlier_outputs():
    run_ctx = ctx(
        nodes={"metrics": {"cpu": {"percent": 97.5}, "memory": {"percent": 40}, "disk": {"percent": 85}}}
    )
    config = check.Config(
        checks=[
            {"name": "cpu", "metric": "cpu.percent", "warning": 80, "critical": 95},
            {"metric": "nodes.metrics.memory.percent", "warning": 80, "critical": 95},
            {"name": "disk", "metric": "disk.percent", "warning": 80, "critical": 90},
            {"name": "gpu", "metric": "gpu.percent", "warning": 80},
        ]
    )
    out = check.run(config, run_ctx)
    by_name = {c["name"]: c for c in out["checks"]}
    assert by_name["cpu"]["status"] == "critical" and by_name["cpu"]["value"] == 97.5
    assert by_name["cpu"]["message"] == "cpu = 97.5 (>= 95)"
    assert by_name["nodes.metrics.memory.percent"]["status"] == "ok"
    assert by_name["disk"]["status"] == "warning"
    assert by_name["gpu"]["status"] == "unknown" and "missing" in by_name["gpu"]["message"]
    assert out["status"] == "critical"
    assert out["counts"] == {"ok": 1, "unknown": 1, "warning": 1, "critical": 1}
    assert out["failed"] == ["cpu", "disk", "gpu"]


def test_http_and_tcp_checks_against_local_servers(httpserver):
    httpserver.expect_request("/health").respond_with_data("ok")
    httpserver.expect_request("/broken").respond_with_data("no", status=503)
    closed_port = free_port()
    config = check.Config(
        http=[
            {"name": "up", "url": httpserver.url_for("/health")},
            {"name": "down", "url": httpserver.url_for("/broken")},
            {"name": "accepts-503", "url": httpserver.url_for("/broken"), "expect_status": [200, 503]},
        ],
        tcp=[
            {"name": "open", "host": "127.0.0.1", "port": httpserver.port},
            {"name": "closed", "host": "127.0.0.1", "port": closed_port},
        ],
    )
    out = check.run(config, ctx())
    by_name = {c["name"]: c for c in out["checks"]}
    assert by_name["up"]["status"] == "ok" and by_name["up"]["http_status"] == 200
    assert (
        by_name["down"]["status"] == "critical" and "HTTP 503, expected [200]" in by_name["down"]["message"]
    )
    assert by_name["accepts-503"]["status"] == "ok"
    assert by_name["open"]["status"] == "ok"
    assert by_name["closed"]["status"] == "critical"
    assert out["status"] == "critical"


def test_http_check_timeout_is_critical():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection but never answers
    try:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        out = check.run(check.Config(http=[{"name": "hang", "url": url, "timeout": 0.3}]), ctx())
    finally:
        listener.close()
    assert out["checks"][0]["status"] == "critical"
    assert out["checks"][0]["message"] == "hang: timed out after 0.3 s"


ANALYSIS = {
    "summary": "Memory pressure on db-01",
    "recommendations": [
        {"title": "Restart worker", "priority": "high"},
        {"title": "Add swap", "priority": "low"},
        {"title": "Page DBA", "priority": "critical"},
    ],
}


def test_transform_steps():
    run_ctx = ctx(nodes={"analyze": ANALYSIS})
    out = transform.run(
        transform.Config(source_node="analyze", filter_priority=["critical", "high"]), run_ctx
    )
    assert [r["title"] for r in out["recommendations"]] == ["Restart worker", "Page DBA"]
    out = transform.run(
        transform.Config(
            source_node="analyze", mapping={"headline": "summary", "count": "length(recommendations)"}
        ),
        run_ctx,
    )
    assert out == {"headline": "Memory pressure on db-01", "count": 3}
    out = transform.run(transform.Config(source_node="analyze", extract="recommendations[].title"), run_ctx)
    assert out == {"value": ["Restart worker", "Add swap", "Page DBA"]}
    out = transform.run(transform.Config(expression="length(nodes.analyze.recommendations)"), run_ctx)
    assert out == {"value": 3}


def test_transform_errors():
    with pytest.raises(ConfigError, match="config.source_node: node 'nothing' has no output"):
        transform.run(transform.Config(source_node="nothing"), ctx())
    with pytest.raises(ValueError, match="unknown priority 'urgent'"):
        transform.Config(filter_priority=["urgent"])
    with pytest.raises(ValueError, match="invalid JMESPath"):
        transform.Config(mapping={"x": "a[["})


def test_condition_picks_branches():
    config = condition.Config.model_validate(
        {"if": "nodes.c.status == 'critical'", "then": "page", "else": ["log"]}
    )
    out = condition.run(config, ctx(nodes={"c": {"status": "critical"}}))
    assert out == {"result": True, "branch": "then", "taken": ["page"], "not_taken": ["log"]}
    out = condition.run(config, ctx(nodes={"c": {"status": "ok"}}))
    assert out == {"result": False, "branch": "else", "taken": ["log"], "not_taken": ["page"]}


def test_references_resolve_at_run_time_and_are_recorded(monkeypatch):
    monkeypatch.setenv("OPSFLOW_TEST_TOKEN", "tok-123456")
    run_ctx = ctx(payload={"host": "db-01", "sneaky": "${OPSFLOW_TEST_TOKEN}"})
    out = resolve(
        {
            "url": "https://hooks.example/${OPSFLOW_TEST_TOKEN}",
            "title": "{{ payload.host }} / {{ payload.sneaky }}",
            "fallback": "${OPSFLOW_UNSET_VAR:-none}",
            "list": ["{{ payload.host | upper }}"],
        },
        run_ctx,
    )
    assert out["url"] == "https://hooks.example/tok-123456"
    # text from the payload is never treated as a reference
    assert out["title"] == "db-01 / ${OPSFLOW_TEST_TOKEN}"
    assert out["fallback"] == "none" and out["list"] == ["DB-01"]
    assert "tok-123456" in run_ctx.secrets
    assert run_ctx.secrets.redact({"a": ["x tok-123456 y"]}) == {"a": ["x *** y"]}


def test_reference_and_template_errors_name_node_and_field(monkeypatch):
    monkeypatch.delenv("OPSFLOW_MISSING", raising=False)
    with pytest.raises(
        TemplateError, match=r"node 'n' config.url: environment variable OPSFLOW_MISSING is not set"
    ):
        resolve({"url": "${OPSFLOW_MISSING}"}, ctx())
    with pytest.raises(TemplateError, match=r"node 'n' config.title: template syntax error"):
        resolve({"title": "{{ payload.x "}, ctx())
    with pytest.raises(TemplateError, match="cannot be read outside a Prefect run"):
        resolve({"k": "${secret:slack-url}"}, ctx())
    got = resolve({"k": "${secret:slack-url}"}, ctx(secret_lookup=lambda name: f"value-of-{name}"))
    assert got == {"k": "value-of-slack-url"}


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ payload.__class__ }}",
        "{% for c in [].__class__.__base__.__subclasses__() %}{{ c }}{% endfor %}",
    ],
)
def test_sandbox_escapes_are_refused(template):
    with pytest.raises(TemplateError, match="unsafe template refused"):
        resolve({"message": template}, ctx(payload={"a": 1}))


def test_masking_and_names_for_display():
    config = {"url": "${SLACK_WEBHOOK_URL}", "k": ["${secret:pd-key}", "x ${A:-b}"]}
    assert mask_references(config) == {"url": "***", "k": ["***", "x ***"]}
    assert referenced_names(config) == ["SLACK_WEBHOOK_URL", "secret:pd-key", "A"]


def test_execute_node_shapes_results_and_scrubs_secrets(monkeypatch):
    monkeypatch.setenv("OPSFLOW_TEST_SECRET", "s3cr3t-value")
    run_ctx = ctx(nodes={"analyze": ANALYSIS})
    result = execute_node(
        "pick", "transform", {"source_node": "analyze", "mapping": {"s": "summary"}}, run_ctx, dynamic=False
    )
    assert result == {
        "node_id": "pick",
        "node_type": "transform",
        "output": {"s": "Memory pressure on db-01"},
        "summary": "transform: 1 key (s)",
        "errors": [],
        "duration_ms": result["duration_ms"],
        "skipped": False,
        "skip_reason": None,
        "attempts": 0,
    }
    with pytest.raises(NodeError) as info:
        execute_node("bad", "context", {"include": ["gpu"]}, run_ctx)
    assert info.value.message.startswith("node 'bad': config.include[0]: Input should be")
    assert not info.value.retryable
    with pytest.raises(NodeError) as info:
        execute_node("leak", "transform", {"source_node": "${OPSFLOW_TEST_SECRET}"}, run_ctx)
    assert "s3cr3t-value" not in str(info.value) and "***" in str(info.value)


def test_secrets_ignore_tiny_values():
    secrets = Secrets({"ab", "abcd"})
    assert secrets.redact("ab abcd") == "ab ***"


@pytest.mark.parametrize("value", [0, 0.0, "0", [0], {"a": None}, True])
def test_jmespath_truthiness_in_condition_and_transform(value):
    config = condition.Config.model_validate({"if": "payload.v", "then": "yes", "else": "no"})
    assert condition.run(config, ctx(payload={"v": value}))["branch"] == "then"
    out = transform.run(
        transform.Config(expression="payload.v && 'kept' || 'dropped'"), ctx(payload={"v": value})
    )
    assert out == {"value": "kept"}


@pytest.mark.parametrize("value", [None, False, "", [], {}])
def test_jmespath_falsy_values(value):
    config = condition.Config.model_validate({"if": "payload.v", "then": "yes", "else": "no"})
    assert condition.run(config, ctx(payload={"v": value}))["branch"] == "else"
