"""HTTP drivers build one request (`Outbound`): the dry-run preview shows what `send` sends, masked."""

from __future__ import annotations

import json
import uuid

import pytest

from nodes.base import REDACTED, NodeContext, RunInfo
from nodes.errors import ConfigError
from nodes.notify import DRIVERS, get_driver, pagerduty, webhook
from nodes.notify import node as notify

SECRET = "s3cr3t-0utb0und-7e6d5c"
# the drivers' fallbacks in the environment: each case here sets what it uses
ENV = (
    "SLACK_WEBHOOK_URL",
    "SLACK_BOT_TOKEN",
    "SLACK_CHANNEL",
    "TEAMS_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    "PAGERDUTY_ROUTING_KEY",
)


@pytest.fixture(autouse=True)
def no_credentials_in_the_environment(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def ctx(thread_ts: str | None = None) -> NodeContext:
    state = {"slack": {"channel": "C0THREAD", "ts": thread_ts}} if thread_ts else {}
    incident = {
        "id": 7,
        "key": "group-key-abc",
        "status": "open",
        "severity": "critical",
        "title": "HighMemory",
        "alerts": [{"status": "firing", "title": "HighMemory", "labels": {"instance": "web-01"}}],
        "notification_state": state,
    }
    return NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex), node_id="notify", incident=incident)


CASES = {
    "slack-webhook": ({"driver": "slack", "webhook_url": "URL"}, None),
    "slack-api": (
        {"driver": "slack", "token": SECRET, "channel": "C1", "api_url": "BASE", "username": "bot"},
        None,
    ),
    "slack-api-thread": ({"driver": "slack", "token": SECRET, "channel": "C1", "api_url": "BASE"}, "1.5"),
    "teams": ({"driver": "teams", "webhook_url": "URL"}, None),
    "discord": ({"driver": "discord", "webhook_url": "URL"}, None),
    "webhook": ({"driver": "webhook", "url": "URL", "method": "PUT", "headers": {"X-Token": SECRET}}, None),
    "pagerduty": ({"driver": "pagerduty", "routing_key": SECRET, "events_url": "URL"}, None),
}


def test_every_http_driver_has_a_case():
    http = {name for name in DRIVERS if get_driver(name).HTTP}
    assert http == {case.split("-")[0] for case in CASES}


@pytest.mark.parametrize("case", CASES)
def test_the_preview_is_the_request_sent_masked(sink, case):
    raw, thread_ts = CASES[case]
    path = f"/hook/{SECRET}"
    ok = {"ok": True, "ts": "2.5", "channel": "C1", "status": "success"}
    sink.expect_request(path).respond_with_json(ok)
    sink.expect_request("/api/chat.postMessage").respond_with_json(ok)
    swap = {"URL": sink.url_for(path), "BASE": sink.url_for("/api")}
    raw = {k: swap.get(v, v) if isinstance(v, str) else v for k, v in raw.items()}

    run = ctx(thread_ts)
    [shown] = notify.preview(raw, run)
    assert sink.log == []
    record = notify.run(notify.Config.model_validate(raw), run)["deliveries"][0]
    assert record["status"] == "delivered"
    [(sent, _)] = sink.log
    assert SECRET not in json.dumps(shown)
    assert shown["method"] == sent.method and shown["url"] == f"http://127.0.0.1:{sink.port}/{REDACTED}"
    assert shown["body"] == json.loads(json.dumps(sent.get_json()).replace(SECRET, REDACTED))
    credentials = [name for name in ("Authorization", "X-Token") if name in sent.headers]
    assert shown.get("headers", {}) == dict.fromkeys(credentials, REDACTED)
    if "token" in raw:  # chat.postMessage: the token header, the thread, the username as sent
        body = shown["body"]
        assert sent.headers["Authorization"] == f"Bearer {SECRET}"
        assert body["channel"] == ("C0THREAD" if thread_ts else "C1") and body.get("thread_ts") == thread_ts
        assert body.get("username") == raw.get("username")


@pytest.mark.parametrize(
    ("driver", "env"),
    [
        ("slack", "SLACK_WEBHOOK_URL"),
        ("teams", "TEAMS_WEBHOOK_URL"),
        ("discord", "DISCORD_WEBHOOK_URL"),
        ("pagerduty", "PAGERDUTY_ROUTING_KEY"),
    ],
)
def test_a_missing_credential_reads_stars_in_a_preview_and_stops_a_send(sink, driver, env):
    [shown] = notify.preview({"driver": driver}, ctx())
    assert "error" not in shown and (shown["url"] == REDACTED or shown["body"]["routing_key"] == REDACTED)
    config = notify.Config.model_validate({"driver": driver})
    with pytest.raises(ConfigError, match=f"{env} is not set"):
        get_driver(driver).send(config.settings, message(), ctx())
    assert sink.log == []


def test_an_outbound_never_shows_its_credentials():
    hook = webhook.Config(
        url=f"https://hooks.example.com/{SECRET}", headers={"Authorization": SECRET}, body={}
    )
    out = webhook.outbound(hook, message())
    assert SECRET not in repr(out) and SECRET not in str(out) and out.url.endswith(SECRET)
    # a routing key too short to scrub from text is still masked where it stands whole
    event = pagerduty.outbound(pagerduty.Config(routing_key="abc"), message()).preview("pagerduty")
    assert (
        event["body"]["routing_key"] == REDACTED
        and event["url"] == f"https://events.pagerduty.com/{REDACTED}"
    )


def message():
    config = notify.Config.model_validate({"driver": "console"})
    return notify.message_for(config, config, ctx())
