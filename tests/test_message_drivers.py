"""Each driver keeps alert text as data: Teams/Discord markdown, HTML email, webhook JSON bodies."""

from __future__ import annotations

import json
import uuid

from pytest_httpserver import HTTPServer

from nodes.base import NodeContext, RunInfo
from nodes.notify import node as notify
from nodes.notify.email import Config as EmailConfig
from nodes.notify.email import build_email
from nodes.notify.message import build_message

HOSTILE = 'disk full" , "severity": "info <!channel> @everyone **bold** [x](https://evil.example) <b>hi</b>'


def ctx_with(description: str = HOSTILE, severity: str = "critical", nodes=None) -> NodeContext:
    alert = {
        "status": "firing",
        "severity": severity,
        "title": "DiskFull",
        "description": description,
        "labels": {"alertname": "DiskFull", "instance": "db-7:9100", "severity": severity},
        "annotations": {"description": description},
        "generator_url": "javascript:alert(1)",
    }
    incident = {
        "id": 3,
        "key": "k",
        "status": "open",
        "severity": severity,
        "title": "DiskFull",
        "alert_count": 1,
        "firing_count": 1,
        "alerts": [alert],
        "labels": alert["labels"],
    }
    run = RunInfo(trace_id=uuid.uuid4().hex, definition="alert-triage")
    return NodeContext(run=run, node_id="notify", incident=incident, nodes=nodes or {})


def deliver(config: dict, ctx: NodeContext) -> dict:
    return notify.run(notify.Config.model_validate(config), ctx)


def test_webhook_string_template_cannot_inject_fields(httpserver: HTTPServer):
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    body = (
        '{"title": "{{ message.title }}", "text": "{{ message.text }}", "severity": "{{ message.severity }}"}'
    )
    deliver({"driver": "webhook", "url": httpserver.url_for("/hook"), "body": body}, ctx_with())
    (sent,) = [json.loads(req.data) for req, _ in httpserver.log]
    assert set(sent) == {"title", "text", "severity"} and sent["severity"] == "critical"
    assert HOSTILE in sent["text"]


def test_default_webhook_body_never_says_no_problems_for_a_critical_alert(httpserver: HTTPServer):
    httpserver.expect_request("/hook").respond_with_data("", status=204)
    ctx = ctx_with(description="")
    ctx.incident["alerts"] = []  # a generic alert: nothing but its title and severity
    deliver({"driver": "webhook", "url": httpserver.url_for("/hook")}, ctx)
    (sent,) = [json.loads(req.data) for req, _ in httpserver.log]
    assert sent["severity"] == "critical" and "No problems found" not in json.dumps(sent)
    assert sent["text"] == "DiskFull: severity critical; no further details were given."


def test_teams_and_discord_escape_markdown_and_mentions(httpserver: HTTPServer):
    httpserver.expect_request("/teams").respond_with_data("", status=202)
    httpserver.expect_request("/discord").respond_with_data("", status=204)
    config = {
        "channels": [
            {"driver": "teams", "webhook_url": httpserver.url_for("/teams")},
            {"driver": "discord", "webhook_url": httpserver.url_for("/discord")},
        ]
    }
    deliver(config, ctx_with())
    by_path = {req.path: json.loads(req.data) for req, _ in httpserver.log}  # sent concurrently
    teams, discord = by_path["/teams"], by_path["/discord"]
    card = json.dumps(teams)
    assert "**bold**" not in card and "[x](https://evil" not in card and "\\\\*\\\\*bold\\\\*\\\\*" in card
    embed = discord["embeds"][0]
    assert discord["allowed_mentions"] == {"parse": []}
    assert "@everyone" not in embed["description"] and "\\*\\*bold\\*\\*" in embed["description"]
    assert "**CRITICAL**" in embed["description"]  # our own markup still renders


def test_email_html_escapes_and_drops_non_http_links():
    ctx = ctx_with()
    message = build_message(ctx)
    assert message.links == []  # javascript: is not a link
    email = build_email(
        EmailConfig(host="127.0.0.1", to=["oncall@example.com"]), message, "opsflow@example.com"
    )
    html = email.get_body(("html",)).get_content()
    assert "<b>hi</b>" not in html and "&lt;b&gt;hi&lt;/b&gt;" in html
    assert "<b>Severity:</b> CRITICAL</p>" in html
    assert "<th align='left'>target</th><td>db-7:9100</td>" in html


def test_teams_and_discord_resolves_quote_the_page_they_answer(httpserver: HTTPServer):
    httpserver.expect_request("/teams").respond_with_data("", status=202)
    httpserver.expect_request("/discord").respond_with_data("", status=204)
    ctx = ctx_with(description="disk at 97%")
    ctx.incident["status"] = "resolved"
    ctx.incident["alerts"][0].update(
        status="resolved", starts_at="2026-11-30T09:12:07Z", ends_at="2026-11-30T10:01:37Z"
    )
    config = {
        "channels": [
            {"driver": "teams", "webhook_url": httpserver.url_for("/teams")},
            {"driver": "discord", "webhook_url": httpserver.url_for("/discord")},
        ]
    }
    deliver(config, ctx)
    by_path = {req.path: json.loads(req.data) for req, _ in httpserver.log}  # sent concurrently
    teams, discord = by_path["/teams"], by_path["/discord"]
    texts = [b.get("text", "") for b in teams["attachments"][0]["content"]["body"]]
    assert "> FIRING: DiskFull, since 2026\\-11\\-30 09:12 UTC" in texts
    assert "Resolved after firing for 49m" in json.dumps(teams)
    assert discord["embeds"][0]["description"].startswith(
        "> FIRING: DiskFull, since 2026\\-11\\-30 09:12 UTC\n"
    )


def test_console_shows_the_target_labels_and_links(capsys):
    ctx = ctx_with(description="disk at 97%", severity="warning")
    ctx.incident["alerts"][0]["generator_url"] = "http://prometheus:9090/graph?g0.expr=disk"
    ctx.nodes["analyze"] = {
        "summary": "Disk full",
        "probable_cause": "",
        "severity": "critical",
        "recommendations": [],
    }
    deliver({"driver": "console"}, ctx)
    out = capsys.readouterr().out
    assert out.startswith("[WARNING (assessed: critical)] DiskFull\n")
    assert (
        "target: db-7:9100" in out
        and "labels: alertname=DiskFull, instance=db-7:9100, severity=warning" in out
    )
    assert "Source: DiskFull: http://prometheus:9090/graph?g0.expr=disk" in out
    assert "Probable cause: none found" in out
