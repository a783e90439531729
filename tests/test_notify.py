"""Notify drivers and the notify node, against real HTTP and SMTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from nodes.base import NodeContext, RunInfo
from nodes.errors import DeliveryError
from nodes.notify import DRIVERS
from nodes.notify import node as notify
from nodes.notify.message import TRUNCATED, alertmanager_subject, build_message, truncate

FIXTURES = Path(__file__).parent / "fixtures" / "outbound"
SECRET = "s3cr3t-T0KEN-9f8e7d"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def make_ctx(incident=None, nodes=None, trace=None, node_id="notify") -> NodeContext:
    run = RunInfo(trace_id=trace or uuid.uuid4().hex, definition="alert-triage")
    return NodeContext(run=run, node_id=node_id, incident=incident, nodes=nodes or {})


def incident(status="open", state=None) -> dict:
    return {
        "id": 7,
        "key": "group-key-abc",
        "status": status,
        "severity": "critical",
        "title": "HighMemory",
        "alert_count": 2,
        "firing_count": 2 if status == "open" else 0,
        "alerts": [
            {
                "status": "firing",
                "title": "HighMemory",
                "labels": {"alertname": "HighMemory", "instance": h},
                "generator_url": f"http://prom:9090/graph?h={h}",
            }
            for h in ("web-01", "db-01")
        ],
        "notification_state": state or {},
    }


ANALYSIS = {
    "summary": "Memory on db-01 is at 97 %; postgres is the top consumer.",
    "probable_cause": "A runaway query",
    "severity": "critical",
    "recommendations": [{"title": "Kill the query", "description": "pg_cancel_backend", "priority": "high"}],
    "provider": "local",
    "model": "rules",
}


def run_node(config: dict, ctx: NodeContext) -> dict:
    return notify.run(notify.Config.model_validate(config), ctx)


@pytest.fixture(scope="module")
def _server():
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sink(_server):
    """A threaded HTTP server on 127.0.0.1 that records every request; emptied after each test."""
    yield _server
    _server.check_assertions()
    _server.clear()


def bodies(server: HTTPServer, path: str | None = None) -> list[dict]:
    return [req.get_json(silent=True) for req, _ in server.log if path is None or req.path == path]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- message building ------------------------------------------------------------------------


def test_message_defaults_from_intelligence_and_incident():
    msg = build_message(make_ctx(incident=incident(), nodes={"analyze": ANALYSIS}))
    assert msg.title == "HighMemory" and msg.severity == "critical" and msg.level == "critical"
    assert "Probable cause: A runaway query" in msg.text and "Kill the query" in msg.text
    assert alertmanager_subject(msg) == "[FIRING:2] HighMemory (db-01 web-01)"
    resolved = build_message(make_ctx(incident=incident("resolved")), title="Custom")
    assert resolved.title == "RESOLVED: Custom" and resolved.headline == "Custom"
    assert alertmanager_subject(resolved) == "[RESOLVED] HighMemory (db-01 web-01)"


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=400), limit=st.integers(min_value=len(TRUNCATED), max_value=300))
def test_truncate_never_exceeds_limit_and_marks_cuts(text, limit):
    cut = truncate(text, limit)
    assert len(cut) <= limit
    assert (
        cut == text
        if len(text) <= limit
        else (cut.endswith(TRUNCATED) and text.startswith(cut[: -len(TRUNCATED)]))
    )


def test_long_content_is_cut_to_each_api_limit(sink):
    sink.expect_request("/slack").respond_with_data("ok")
    sink.expect_request("/discord").respond_with_data("", status=204)
    long = "x" * 20_000
    ctx = make_ctx(nodes={"analyze": {**ANALYSIS, "summary": long}})
    run_node(
        {
            "channels": [
                {"driver": "slack", "webhook_url": sink.url_for("/slack"), "title": "t" * 500},
                {"driver": "discord", "webhook_url": sink.url_for("/discord")},
            ],
            "message": long,
        },
        ctx,
    )
    slack, discord = bodies(sink, "/slack")[0], bodies(sink, "/discord")[0]
    assert len(slack["blocks"][0]["text"]["text"]) == 150
    assert all(len(b["text"]["text"]) <= 3000 for b in slack["blocks"] if b["type"] == "section")
    assert slack["blocks"][2]["text"]["text"].endswith(TRUNCATED)
    embed = discord["embeds"][0]
    total = (
        len(embed["title"])
        + len(embed["description"])
        + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    )
    assert total <= 6000 and embed["description"].endswith(TRUNCATED)


# -- slack --------------------------------------------------------------------------------------


def test_slack_webhook_sends_text_and_blocks(sink):
    sink.expect_request("/services/T0/B0/XYZ", method="POST").respond_with_data("ok")
    ctx = make_ctx(incident=incident(), nodes={"analyze": ANALYSIS})
    out = run_node({"driver": "slack", "webhook_url": sink.url_for("/services/T0/B0/XYZ")}, ctx)
    body = bodies(sink)[0]
    assert body["text"].startswith("HighMemory")
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds[0] == "header" and "context" in kinds
    flat = json.dumps(body)
    assert ":red_circle:" in flat and "Kill the query" in flat and "A runaway query" in flat
    assert "http://prom:9090/graph?h=web-01" in flat
    assert body["attachments"][0]["color"] == "#d00000"
    record = out["deliveries"][0]
    assert record["status"] == "delivered" and record["http_status"] == 200
    assert "XYZ" not in json.dumps(out)


@pytest.mark.parametrize(
    "case", [r for r in fixture("slack-incoming-webhook-responses.json")["responses"] if r["status"] != 200]
)
def test_slack_webhook_errors_carry_slacks_words(sink, case):
    headers = {"Retry-After": "7"} if case["status"] == 429 else {}
    sink.expect_request("/hook").respond_with_data(case["body"], status=case["status"], headers=headers)
    with pytest.raises(DeliveryError) as err:
        run_node({"driver": "slack", "webhook_url": sink.url_for("/hook")}, make_ctx())
    assert case["body"] in err.value.message
    assert err.value.retryable is (case["status"] == 429 or case["status"] >= 500)
    if case["status"] == 429:
        assert err.value.retry_after == 7.0


def test_slack_api_posts_then_threads_the_resolve(sink):
    ok = fixture("slack-chat-postMessage-response-ok.json")
    sink.expect_request(
        "/api/chat.postMessage", headers={"Authorization": f"Bearer {SECRET}"}
    ).respond_with_json(ok)
    sink.expect_request("/api/chat.update").respond_with_json({"ok": True, "ts": ok["ts"]})
    config = {"driver": "slack", "token": SECRET, "channel": "#ops", "api_url": sink.url_for("/api")}
    fired = run_node(config, make_ctx(incident=incident()))
    state = fired["deliveries"][0]["incident_state"]
    assert state == {"slack": {"ts": ok["ts"], "channel": ok["channel"]}}
    assert fired["incident_state"] == state and fired["deliveries"][0]["message_id"] == ok["ts"]
    assert "thread_ts" not in bodies(sink)[0]

    resolved = run_node(config, make_ctx(incident=incident("resolved", state=state)))
    body, update = bodies(sink)[1:]
    assert body["thread_ts"] == ok["ts"] and body["channel"] == ok["channel"]
    assert update["ts"] == ok["ts"] and update["text"].startswith("RESOLVED: HighMemory")
    assert resolved["deliveries"][0]["root_updated"] is True
    assert body["text"].startswith("RESOLVED: HighMemory")
    assert resolved["incident_state"]["slack"]["ts"] == ok["ts"]  # the thread root is kept
    assert SECRET not in json.dumps(fired) + json.dumps(resolved)


@pytest.mark.parametrize(
    "error,retryable",
    [
        ("channel_not_found", False),
        ("invalid_auth", False),
        ("too_many_attachments", False),
        ("internal_error", True),
    ],
)
def test_slack_api_ok_false_is_a_failure(sink, error, retryable):
    sink.expect_request("/api/chat.postMessage").respond_with_json({"ok": False, "error": error})
    with pytest.raises(DeliveryError) as err:
        run_node(
            {"driver": "slack", "token": SECRET, "channel": "C1", "api_url": sink.url_for("/api")}, make_ctx()
        )
    assert error in err.value.message and err.value.retryable is retryable
    assert SECRET not in err.value.message and SECRET not in json.dumps(err.value.details)


def test_slack_needs_a_target(monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("SLACK_BOT_TOKEN", raising=False)
    with pytest.raises(DeliveryError, match="SLACK_WEBHOOK_URL"):
        run_node({"driver": "slack"}, make_ctx())
    with pytest.raises(ValueError, match="not both"):
        notify.Config.model_validate({"driver": "slack", "token": "x", "webhook_url": "y"})


# -- transport failures ------------------------------------------------------------------------


def test_timeout_is_retryable(sink):
    release = threading.Event()

    def hang(request: Request) -> Response:
        release.wait(5)
        return Response("ok")

    sink.expect_request("/slow").respond_with_handler(hang)
    try:
        with pytest.raises(DeliveryError) as err:
            run_node(
                {"driver": "teams", "webhook_url": sink.url_for("/slow"), "timeout_seconds": 0.2}, make_ctx()
            )
    finally:
        release.set()
    for _ in range(500):  # let the held request finish, so it is not logged in the next test
        if sink.log:
            break
        threading.Event().wait(0.01)
    assert err.value.retryable and "no answer within 0.2s" in err.value.message


def test_connection_refused_is_retryable_and_hides_the_url_path():
    url = f"http://127.0.0.1:{free_port()}/hooks/{SECRET}"
    with pytest.raises(DeliveryError) as err:
        run_node({"driver": "discord", "webhook_url": url}, make_ctx())
    assert err.value.retryable and "connection failed" in err.value.message
    assert SECRET not in err.value.message


# -- pagerduty ---------------------------------------------------------------------------------


def test_pagerduty_trigger_and_resolve_share_the_dedup_key(sink, monkeypatch):
    key = "R" * 32
    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", key)
    sink.expect_request("/v2/enqueue", method="POST").respond_with_json(
        {**fixture("pagerduty-events-v2-response-202.json"), "dedup_key": "group-key-abc"}, status=202
    )
    config = {"driver": "pagerduty", "events_url": sink.url_for("/v2/enqueue")}
    fired = run_node(config, make_ctx(incident=incident(), nodes={"analyze": ANALYSIS}))
    run_node(config, make_ctx(incident=incident("resolved")))
    trigger, resolve = bodies(sink)
    sample = fixture("pagerduty-events-v2-enqueue-request-trigger.json")
    assert set(trigger) >= {"routing_key", "dedup_key", "event_action", "payload"}
    assert set(trigger["payload"]) >= {k for k in sample["payload"] if k in ("summary", "source", "severity")}
    assert trigger["event_action"] == "trigger" and trigger["dedup_key"] == "group-key-abc"
    assert trigger["payload"]["severity"] == "critical" and trigger["payload"]["source"] == "web-01"
    assert set(resolve) == set(fixture("pagerduty-events-v2-enqueue-request-resolve.json"))
    assert resolve == {"routing_key": key, "dedup_key": "group-key-abc", "event_action": "resolve"}
    assert fired["deliveries"][0]["http_status"] == 202 and key not in json.dumps(fired)


def test_pagerduty_without_incident_uses_a_stable_key(sink):
    sink.expect_request("/v2/enqueue").respond_with_json({"status": "success"}, status=202)
    config = {
        "driver": "pagerduty",
        "routing_key": SECRET,
        "events_url": sink.url_for("/v2/enqueue"),
        "title": "disk full",
    }
    run_node(config, make_ctx())
    run_node(config, make_ctx())
    first, second = bodies(sink)
    assert first["dedup_key"] == second["dedup_key"] and first["dedup_key"].startswith("opsflow-")


def test_pagerduty_400_is_final_with_its_reason(sink):
    sink.expect_request("/v2/enqueue").respond_with_json(
        fixture("pagerduty-events-v2-response-400-invalid-event.json"), status=400
    )
    with pytest.raises(DeliveryError) as err:
        run_node(
            {"driver": "pagerduty", "routing_key": SECRET, "events_url": sink.url_for("/v2/enqueue")},
            make_ctx(),
        )
    assert not err.value.retryable
    assert "invalid event" in err.value.message and "Length of 'routing_key'" in err.value.message


# -- teams, discord, webhook --------------------------------------------------------------------


def test_teams_posts_an_adaptive_card_and_any_2xx_is_fine(sink):
    sink.expect_request("/wf").respond_with_data("", status=202)
    out = run_node(
        {"driver": "teams", "webhook_url": sink.url_for("/wf")},
        make_ctx(incident=incident(), nodes={"analyze": ANALYSIS}),
    )
    body, sample = bodies(sink)[0], fixture("teams-workflows-request-adaptive-card.json")
    assert body["type"] == sample["type"]
    assert body["attachments"][0]["contentType"] == sample["attachments"][0]["contentType"]
    card = body["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard" and card["body"][0]["color"] == "Attention"
    assert any(a["type"] == "Action.OpenUrl" for a in card["actions"])
    assert out["deliveries"][0]["http_status"] == 202


def test_discord_embed_and_429_retry_after_from_json(sink):
    sink.expect_request("/ok").respond_with_data("", status=204)
    sink.expect_request("/limited").respond_with_json(
        fixture("discord-webhook-response-429.json"), status=429, headers={"Retry-After": "65"}
    )
    out = run_node({"driver": "discord", "webhook_url": sink.url_for("/ok")}, make_ctx(incident=incident()))
    embed = bodies(sink)[0]["embeds"][0]
    assert set(embed) >= set(fixture("discord-webhook-request.json")["embeds"][0])
    assert out["deliveries"][0]["http_status"] == 204
    with pytest.raises(DeliveryError) as err:
        run_node({"driver": "discord", "webhook_url": sink.url_for("/limited")}, make_ctx())
    assert err.value.retryable and err.value.retry_after == 64.57
    assert "You are being rate limited" in err.value.message


def test_webhook_renders_its_body_template_with_message(sink):
    sink.expect_request("/in", method="PUT", headers={"X-Token": SECRET}).respond_with_data("{}")
    ctx = make_ctx(incident=incident(), nodes={"analyze": ANALYSIS})
    ctx.payload = {"receiver": "ops"}
    raw = {
        "driver": "webhook",
        "url": sink.url_for("/in"),
        "method": "PUT",
        "headers": {"X-Token": SECRET},
        "body": '{"t": {{ message.title | tojson }}, "who": "{{ payload.receiver }}", '
        '"recs": {{ message.recommendations | length }}}',
    }
    out = run_node(notify.resolve_config(raw, ctx), ctx)
    assert bodies(sink)[0] == {"t": "HighMemory", "who": "ops", "recs": 1}
    assert SECRET not in json.dumps(out)


def test_webhook_object_body_and_bad_template(sink, monkeypatch):
    monkeypatch.setenv("OPSFLOW_TEST_HOOK_TAG", "prod")
    sink.expect_request("/in").respond_with_data("ok")
    ctx = make_ctx(incident=incident())
    raw = {
        "driver": "webhook",
        "url": sink.url_for("/in"),
        "body": {"title": "{{ message.title }}", "env": "${OPSFLOW_TEST_HOOK_TAG}", "n": 3},
    }
    run_node(notify.resolve_config(raw, ctx), ctx)
    assert bodies(sink)[0] == {"title": "HighMemory", "env": "prod", "n": 3}
    with pytest.raises(DeliveryError, match="did not render to JSON") as err:
        run_node({"driver": "webhook", "url": sink.url_for("/in"), "body": "not {{ 'json' }}"}, ctx)
    assert not err.value.retryable


# -- node: fan-out, retry memory, secrets --------------------------------------------------------


def test_fan_out_retry_does_not_resend_delivered_channels(sink):
    calls = {"flaky": 0}

    def flaky(request: Request) -> Response:
        calls["flaky"] += 1
        return Response("busy", status=503) if calls["flaky"] == 1 else Response("ok")

    sink.expect_request("/a").respond_with_data("ok")
    sink.expect_request("/flaky").respond_with_handler(flaky)
    config = {
        "channels": [
            {"driver": "slack", "webhook_url": sink.url_for("/a")},
            {"driver": "webhook", "url": sink.url_for("/flaky")},
            {"driver": "console"},
        ]
    }
    ctx = make_ctx()
    with pytest.raises(DeliveryError) as err:
        run_node(config, ctx)
    assert err.value.retryable and "1 of 3 channel(s) failed" in err.value.message
    assert err.value.details["channels_succeeded"] == 2
    assert err.value.details["deliveries"][1]["http_status"] == 503
    ctx.attempt = 2
    out = run_node(config, ctx)
    assert out["channels_attempted"] == 3 and out["channels_succeeded"] == 3
    # channels are delivered concurrently: the order of arrival is not fixed
    assert sorted(req.path for req, _ in sink.log) == ["/a", "/flaky", "/flaky"]
    assert out["deliveries"][0]["earlier_attempt"] is True and "earlier_attempt" not in out["deliveries"][1]
    run_node(config, make_ctx())  # another run sends everything again
    assert [req.path for req, _ in sink.log].count("/a") == 2


def test_fan_out_is_concurrent(sink):
    barrier = threading.Barrier(5, timeout=10)

    def meet(request: Request) -> Response:
        barrier.wait()  # only returns once 5 requests are in flight together
        return Response("ok")

    sink.expect_request("/meet").respond_with_handler(meet)
    out = run_node(
        {"channels": [{"driver": "webhook", "url": sink.url_for("/meet")} for _ in range(5)]}, make_ctx()
    )
    assert out["channels_succeeded"] == 5


def test_secrets_never_reach_output_records_or_errors(sink, monkeypatch):
    from nodes import runtime

    monkeypatch.setenv("OPSFLOW_TEST_SLACK_URL", sink.url_for(f"/services/{SECRET}"))
    sink.expect_request(f"/services/{SECRET}").respond_with_data("ok")
    sink.expect_request("/echo").respond_with_data(f"bad token {SECRET}", status=401)
    raw = {
        "channels": [
            {"driver": "slack", "webhook_url": "${OPSFLOW_TEST_SLACK_URL}"},
            {"driver": "webhook", "url": sink.url_for("/echo"), "headers": {"Authorization": SECRET}},
        ]
    }
    ctx = make_ctx()
    with pytest.raises(DeliveryError) as err:
        runtime.execute_node("notify", "notify", raw, ctx)
    assert not err.value.retryable and "HTTP 401" in err.value.message
    assert SECRET not in str(err.value) and SECRET not in json.dumps(err.value.details)
    assert err.value.details["deliveries"][0]["status"] == "delivered"


# -- dry-run preview ----------------------------------------------------------------------------


def test_preview_sends_nothing_and_masks_secrets(sink, monkeypatch):
    monkeypatch.delenv("OPSFLOW_TEST_MISSING", raising=False)
    monkeypatch.setenv("OPSFLOW_TEST_PD_KEY", SECRET)
    monkeypatch.setenv("OPSFLOW_TEST_HOOK", sink.url_for(f"/services/{SECRET}"))
    raw = {
        "title": "{{ incident.title }} on {{ run.definition }}",
        "channels": [
            {"driver": "slack", "webhook_url": "${OPSFLOW_TEST_HOOK}"},
            {"driver": "teams", "webhook_url": "${OPSFLOW_TEST_MISSING}"},
            {"driver": "pagerduty", "routing_key": "${OPSFLOW_TEST_PD_KEY}"},
            {
                "driver": "webhook",
                "url": "${OPSFLOW_TEST_MISSING}",
                "headers": {"Authorization": "Bearer x1y2z3"},
                "body": {"t": "{{ message.title }}"},
            },
            {
                "driver": "email",
                "to": "oncall@example.com",
                "host": "smtp.example.com",
                "sender": "a@example.com",
            },
            {"driver": "console"},
        ],
    }
    previews = notify.preview(raw, make_ctx(incident=incident()))
    assert sink.log == []
    text = json.dumps(previews)
    assert SECRET not in text and "x1y2z3" not in text
    slack, teams, pagerduty, webhook, email, console = previews
    assert slack["url"] == f"http://127.0.0.1:{sink.port}/***" and slack["method"] == "POST"
    assert slack["body"]["blocks"][0]["text"]["text"] == "HighMemory on alert-triage"
    assert teams["url"] == "***" and webhook["url"] == "***"
    assert (
        pagerduty["body"]["routing_key"] == "***" and pagerduty["url"] == "https://events.pagerduty.com/***"
    )
    assert webhook["body"] == {"t": "HighMemory on alert-triage"} and webhook["headers"] == {
        "Authorization": "***"
    }
    assert email["body"]["subject"] == "[FIRING:2] HighMemory (db-01 web-01)"
    assert console["body"].startswith("[CRITICAL]")


def test_preview_reports_config_errors_instead_of_raising():
    previews = notify.preview({"driver": "email", "to": []}, make_ctx())
    assert "recipient" in previews[0]["error"]


# -- a round trip through every registered driver ---------------------------------------------


class _Recorder:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def smtp_sink():
    from aiosmtpd.controller import Controller

    handler = _Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller, handler
    controller.stop()


ROUND_TRIP = {
    "console": lambda sink, smtp: {"driver": "console"},
    "slack": lambda sink, smtp: {"driver": "slack", "webhook_url": sink.url_for(f"/rt/{SECRET}")},
    "teams": lambda sink, smtp: {"driver": "teams", "webhook_url": sink.url_for(f"/rt/{SECRET}")},
    "discord": lambda sink, smtp: {"driver": "discord", "webhook_url": sink.url_for(f"/rt/{SECRET}")},
    "webhook": lambda sink, smtp: {"driver": "webhook", "url": sink.url_for(f"/rt/{SECRET}")},
    "pagerduty": lambda sink, smtp: {
        "driver": "pagerduty",
        "routing_key": SECRET,
        "events_url": sink.url_for(f"/rt/{SECRET}"),
    },
    "email": lambda sink, smtp: {
        "driver": "email",
        "to": ["oncall@example.com"],
        "host": "127.0.0.1",
        "port": smtp.port,
        "security": "none",
        "sender": "ops@example.com",
        "password": SECRET,
    },
}


@pytest.mark.parametrize("name", sorted(DRIVERS))
def test_driver_round_trip(name, sink, smtp_sink, capsys):
    assert name in ROUND_TRIP, f"driver {name!r} has no round-trip case"
    controller, smtp = smtp_sink
    sink.expect_request(f"/rt/{SECRET}").respond_with_json({"status": "success"}, status=202)
    config = ROUND_TRIP[name](sink, controller)
    out = run_node(config, make_ctx(incident=incident(), nodes={"analyze": ANALYSIS}))
    record = out["deliveries"][0]
    assert record["driver"] == name and record["status"] == "delivered"
    assert set(record) >= {"driver", "status", "http_status", "message_id", "error"}
    assert SECRET not in json.dumps(out)
    received = len(sink.log) + len(smtp.messages) + ("HighMemory" in capsys.readouterr().out)
    assert received == 1
    assert notify.preview(config, make_ctx(incident=incident()))[0]["driver"] == name


def test_unknown_driver_lists_known_ones():
    with pytest.raises(ValueError, match="known: console, discord, email"):
        notify.Config.model_validate({"driver": "carrier-pigeon"})


def test_no_stray_config_keys():
    with pytest.raises(ValueError, match="webhook_ur"):
        notify.Config.model_validate({"driver": "slack", "webhook_ur": "x"})
    assert isinstance(
        notify.Config.model_validate({"driver": "slack", "webhook_url": "x"}).settings.webhook_url, SecretStr
    )


def test_config_error_for_missing_email_host(monkeypatch):
    monkeypatch.delenv("SMTP_HOST", raising=False)
    with pytest.raises(DeliveryError) as err:
        run_node({"driver": "email", "to": "a@example.com"}, make_ctx())
    assert "SMTP_HOST" in err.value.message and not err.value.retryable


def test_memory_is_bounded():
    from nodes.incidents import run_memory

    for i in range(run_memory._LOCAL_LIMIT + 10):
        run_memory.remember(f"t{i}", "n", "0:console:x", {"driver": "console"}, durable=False)
    assert len(run_memory._local) == run_memory._LOCAL_LIMIT
    notify.forget_deliveries()
    assert not run_memory._local
