"""The notify node: building the message, fan-out and retry memory, secrets, dry-run previews, its config.

The drivers themselves are in test_notify_drivers.py, the standards every driver meets in
test_registry_standards.py.
"""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from support.notify_cases import (
    ANALYSIS,
    SECRET,
    bodies,
    incident,
    make_ctx,
    run_node,
)
from werkzeug import Request, Response

from nodes.errors import DeliveryError
from nodes.notify import node as notify
from nodes.notify.message import TRUNCATED, alertmanager_subject, build_message, truncate

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


def test_memory_is_bounded():
    from nodes.incidents import run_memory

    for i in range(run_memory._LOCAL_LIMIT + 10):
        run_memory.remember(f"t{i}", "n", "0:console:x", {"driver": "console"}, durable=False)
    assert len(run_memory._local) == run_memory._LOCAL_LIMIT
    notify.forget_deliveries()
    assert not run_memory._local


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


# -- config --------------------------------------------------------------------------------------


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
