"""Alert formats: every captured payload parses into the expected alerts; bad ones fail cleanly."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from nodes.errors import DefinitionError, IngestError
from nodes.ingest import FORMATS, HTTP_KEY, detect_format, get_format
from nodes.ingest.alert import SEVERITIES, map_severity
from nodes.ingest.node import Config

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def parse(payload: dict, name: str | None = None, **settings):
    name = name or detect_format(payload)
    fmt = get_format(name)
    return fmt.parse(payload, fmt.Config(**settings))


# file -> (format, [(fingerprint, status, severity)], incident title)
EXPECTED = {
    "alertmanager/firing-group.json": (
        "alertmanager",
        [("7784fcd5d978e00f", "firing", "critical"), ("c36d5cbacd34d84c", "firing", "warning")],
        "HighMemory",
    ),
    "alertmanager/resolved-group.json": (
        "alertmanager",
        [("7784fcd5d978e00f", "resolved", "critical"), ("c36d5cbacd34d84c", "resolved", "warning")],
        "HighMemory",
    ),
    "inbound/alertmanager-firing-zulip.json": (
        "alertmanager",
        [("a1bc48475b20e73d", "firing", "critical"), ("c2ea85182f28cbd9", "firing", "critical")],
        "High CPU Temperature",
    ),
    "inbound/alertmanager-firing-group.json": (
        "alertmanager",
        [
            ("dc46cd0d83dce113", "firing", "critical"),
            ("a5d6a1c0554fc811", "firing", "critical"),
            ("3ecb524b682d3dc4", "firing", "critical"),
        ],
        "ICMP ping failed",
    ),
    "inbound/alertmanager-firing-compact-2018.json": (
        "alertmanager",
        [("3e1a232f8fa7ad1b", "firing", "critical")],
        "Fire",
    ),
    "inbound/alertmanager-resolved-compact-2018.json": (
        "alertmanager",
        [("3e1a232f8fa7ad1b", "resolved", "critical")],
        "Fire",
    ),
    "inbound/grafana-unified-firing.json": (
        "grafana",
        [("c6eadffa33fcdf37", "firing", "warning"), ("bc97ff14869b13e3", "firing", "warning")],
        "High memory usage",
    ),
    "inbound/grafana-unified-resolved.json": (
        "grafana",
        [("d8a21484c9c25a60", "resolved", "warning")],
        "Test alert",
    ),
    "inbound/grafana-legacy-alerting.json": (
        "grafana",
        [("2dac62f129d1c811", "firing", "critical")],
        "Test rule",
    ),
    "inbound/grafana-legacy-ok.json": (
        "grafana",
        [("2dac62f129d1c811", "resolved", "critical")],
        "Test rule",
    ),
    "inbound/aws-cloudwatch-sns-alarm.json": (
        "cloudwatch",
        [("654b7e36518c5c9a", "firing", "critical")],
        "bucketbytesAlarm",
    ),
    "inbound/datadog-webhook-default-template-filled.json": (
        "datadog",
        [("datadog:0297e3ab44ffe3c6", "firing", "critical")],
        "[TEST] Host Cluster Alert",
    ),
    "inbound/pagerduty-v3-incident-triggered.json": (
        "pagerduty",
        [("pagerduty:PFQZPSY", "firing", "critical")],
        "Test Incident 3",
    ),
    "inbound/zabbix-zulip-problem.json": (
        "zabbix",
        [("zabbix:14032", "firing", "warning")],
        "Zabbix agent on www.example.com is unreachable for 5 minutes",
    ),
    "inbound/zabbix-zulip-ok.json": (
        "zabbix",
        [("zabbix:14032", "resolved", "warning")],
        "Zabbix agent on www.example.com is reachable",
    ),
}

ALERT_KEYS = {
    "fingerprint",
    "status",
    "severity",
    "title",
    "description",
    "labels",
    "annotations",
    "source",
    "starts_at",
    "ends_at",
    "generator_url",
}


def test_every_fixture_has_an_expectation():
    files = {
        str(p.relative_to(FIXTURES))
        for d in ("inbound", "alertmanager")
        for p in (FIXTURES / d).glob("*.json")
    }
    assert files - {"inbound/aws-sns-subscription-confirmation.json"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_into_expected_alerts(name):
    fmt, expected, title = EXPECTED[name]
    payload = load(name)
    assert detect_format(payload) == fmt
    parsed = parse(payload)
    assert [(a["fingerprint"], a["status"], a["severity"]) for a in parsed.alerts] == expected
    assert parsed.title == title
    assert parsed.group_key and parsed.ignored is None
    for alert in parsed.alerts:
        assert set(alert) == ALERT_KEYS
        assert alert["source"] == fmt
        assert all(isinstance(v, str) for v in alert["labels"].values())
    # the explicit driver gives the same result as detection
    assert parse(payload, fmt).alerts == parsed.alerts


def test_alertmanager_fields_are_normalised():
    alert = parse(load("alertmanager/firing-group.json")).alerts[1]
    assert alert["title"] == "HighMemory"
    assert alert["description"] == "web-01 memory at 91% for 5m"
    assert alert["labels"]["instance"] == "web-01"
    assert alert["annotations"]["summary"] == "Memory usage above 85%"
    assert alert["starts_at"] == "2026-11-22T18:22:52Z"
    assert alert["ends_at"] is None  # firing: endsAt is the zero time
    assert alert["generator_url"] == "http://prometheus:9090/graph?g0.expr=mem"
    assert parse(load("alertmanager/firing-group.json")).alerts[0]["generator_url"] is None


def test_alertmanager_trusts_status_not_ends_at():
    payload = load("inbound/alertmanager-firing-compact-2018.json")
    # endsAt lies in the past relative to "now" and before resolution: still firing
    assert parse(payload).alerts[0]["status"] == "firing"
    assert parse(payload).alerts[0]["ends_at"] is None
    resolved = parse(load("inbound/alertmanager-resolved-compact-2018.json")).alerts[0]
    assert resolved["ends_at"] == "2018-11-04T21:48:13.283995Z"


def test_alertmanager_ignores_unknown_keys_and_hashes_labels_without_fingerprint():
    payload = load("alertmanager/firing-group.json")
    payload["notification_reason"] = "repeat"
    payload["routeLabels"] = {"team": "db"}
    payload["alerts"][0]["someFutureField"] = {"x": [1, 2]}
    del payload["alerts"][0]["fingerprint"]
    first = parse(payload).alerts[0]
    shuffled = copy.deepcopy(payload)
    shuffled["alerts"][0]["labels"] = dict(reversed(list(payload["alerts"][0]["labels"].items())))
    assert parse(shuffled).alerts[0]["fingerprint"] == first["fingerprint"]
    assert len(first["fingerprint"]) == 16
    changed = copy.deepcopy(payload)
    changed["alerts"][0]["labels"]["instance"] = "db-02"
    assert parse(changed).alerts[0]["fingerprint"] != first["fingerprint"]


def test_firing_and_resolved_share_group_key():
    assert (
        parse(load("alertmanager/firing-group.json")).group_key
        == parse(load("alertmanager/resolved-group.json")).group_key
    )
    assert (
        parse(load("inbound/zabbix-zulip-problem.json")).group_key
        == parse(load("inbound/zabbix-zulip-ok.json")).group_key
    )
    assert (
        parse(load("inbound/grafana-legacy-alerting.json")).group_key
        == parse(load("inbound/grafana-legacy-ok.json")).group_key
    )


def test_cloudwatch_ok_resolves_and_other_states_are_ignored():
    payload = load("inbound/aws-cloudwatch-sns-alarm.json")
    message = json.loads(payload["Message"])
    message["NewStateValue"] = "OK"
    ok = parse({**payload, "Message": json.dumps(message)})
    assert ok.alerts[0]["status"] == "resolved"
    assert ok.alerts[0]["fingerprint"] == parse(payload).alerts[0]["fingerprint"]
    assert ok.alerts[0]["labels"]["dimension_BucketName"] == "try.alerta.io"
    message["NewStateValue"] = "INSUFFICIENT_DATA"
    assert "INSUFFICIENT_DATA" in parse({**payload, "Message": json.dumps(message)}).ignored
    message["AlarmArn"] = "arn:aws:cloudwatch:eu-west-1:1234567890:alarm:x"
    message["NewStateValue"] = "ALARM"
    with_arn = parse({**payload, "Message": json.dumps(message)})
    assert with_arn.alerts[0]["fingerprint"] != parse(payload).alerts[0]["fingerprint"]


def test_sns_subscription_confirmation_is_ignored_with_its_url():
    parsed = parse(load("inbound/aws-sns-subscription-confirmation.json"))
    assert parsed.alerts == []
    assert "SubscriptionConfirmation" in parsed.ignored
    assert parsed.extra["subscribe_url"].startswith("https://sns.eu-west-1.amazonaws.com/")


def test_sns_message_that_is_not_an_alarm_is_a_clear_error():
    payload = load("inbound/aws-cloudwatch-sns-alarm.json")
    with pytest.raises(IngestError, match="Message: is not a CloudWatch alarm"):
        parse({**payload, "Message": "hello"})
    with pytest.raises(IngestError, match="AlarmName: is missing"):
        parse({**payload, "Message": "{}"})


def test_datadog_recovery_resolves_the_same_alert():
    payload = load("inbound/datadog-webhook-default-template-filled.json")
    triggered = parse(payload).alerts[0]
    recovered = parse({**payload, "title": "[Recovered] [TEST] Host Cluster Alert", "id": "9"})
    assert recovered.alerts[0]["status"] == "resolved"
    assert recovered.alerts[0]["fingerprint"] == triggered["fingerprint"]
    assert triggered["starts_at"] == "2020-06-03T20:43:05Z"
    warn = parse({**payload, "alert_transition": "Warn", "tags": "env:prod,team:db"}).alerts[0]
    assert warn["severity"] == "warning"
    assert warn["labels"]["env"] == "prod"


def test_pagerduty_resolved_event_and_ping():
    payload = load("inbound/pagerduty-v3-incident-triggered.json")
    resolved = copy.deepcopy(payload)
    resolved["event"]["event_type"] = "incident.resolved"
    resolved["event"]["data"]["status"] = "resolved"
    alert = parse(resolved).alerts[0]
    assert (alert["status"], alert["fingerprint"]) == ("resolved", "pagerduty:PFQZPSY")
    ping = {"event": {"event_type": "pagey.ping", "resource_type": "pagey", "data": None}}
    assert "pagey.ping" in parse(ping).ignored


def _signed(payload: dict, secret: str, *, header="X-PagerDuty-Signature", sig=None) -> dict:
    raw = json.dumps(payload)
    digest = sig or hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()
    return {**payload, HTTP_KEY: {"headers": {header: f"v1=deadbeef,v1={digest}"}, "raw_body": raw}}


def test_pagerduty_signature_is_verified():
    payload = load("inbound/pagerduty-v3-incident-triggered.json")
    secret = SecretStr("whsec-test-1234")
    parsed = parse(_signed(payload, "whsec-test-1234"), "pagerduty", signing_secret=secret)
    assert parsed.alerts[0]["fingerprint"] == "pagerduty:PFQZPSY"
    lower = _signed(payload, "whsec-test-1234", header="x-pagerduty-signature")
    assert parse(lower, "pagerduty", signing_secret=secret).alerts
    with pytest.raises(IngestError, match="does not match"):
        parse(_signed(payload, "other-secret"), "pagerduty", signing_secret=secret)
    with pytest.raises(IngestError, match="no raw webhook request"):
        parse(payload, "pagerduty", signing_secret=secret)
    unsigned = _signed(payload, "whsec-test-1234")
    unsigned[HTTP_KEY]["headers"] = {}
    with pytest.raises(IngestError, match="header is missing"):
        parse(unsigned, "pagerduty", signing_secret=secret)


def test_pagerduty_reads_the_signed_body_not_the_dict_beside_it():
    payload = load("inbound/pagerduty-v3-incident-triggered.json")
    secret = SecretStr("whsec-test-1234")
    tampered = _signed(payload, "whsec-test-1234")
    tampered["event"] = {**tampered["event"], "data": {**payload["event"]["data"], "id": "EVIL"}}
    assert parse(tampered, "pagerduty", signing_secret=secret).alerts[0]["fingerprint"] == (
        "pagerduty:PFQZPSY"
    )


def test_generic_payload():
    parsed = parse({"title": "Disk full", "severity": "P1", "labels": {"host": "a", "n": 3}})
    alert = parsed.alerts[0]
    assert (alert["status"], alert["severity"], alert["labels"]) == (
        "firing",
        "critical",
        {"host": "a", "n": "3"},
    )
    again = parse({"title": "Disk full", "severity": "low", "labels": {"n": 3, "host": "a"}})
    assert again.alerts[0]["fingerprint"] == alert["fingerprint"]
    explicit = parse({"title": "x", "fingerprint": "abc", "status": "ok"}, "generic")
    assert (explicit.alerts[0]["fingerprint"], explicit.alerts[0]["status"]) == ("abc", "resolved")
    assert explicit.group_key == "generic:abc"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("critical", "critical"),
        ("major", "critical"),
        ("Disaster", "critical"),
        ("P1", "critical"),
        ("error", "critical"),
        ("High", "critical"),
        ("warning", "warning"),
        ("warn", "warning"),
        ("Average", "warning"),
        ("minor", "warning"),
        ("info", "info"),
        ("informational", "info"),
        ("Not classified", "info"),
        ("low", "info"),
        ("something-else", "warning"),
        (None, "warning"),
        ({"x": 1}, "warning"),
    ],
)
def test_map_severity(text, expected):
    assert map_severity(text) == expected
    assert expected in SEVERITIES


def test_undetectable_payload_names_what_was_expected():
    with pytest.raises(IngestError) as err:
        detect_format({"foo": 1, "bar": [1]})
    message = str(err.value)
    assert "cannot detect the alert format" in message
    assert "payload keys: bar, foo" in message
    for name in FORMATS:
        assert f"{name}:" in message
    with pytest.raises(IngestError, match="expected a JSON object, got list"):
        detect_format([1, 2])


@pytest.mark.parametrize(
    ("payload", "driver", "message"),
    [
        ({"receiver": "x"}, "alertmanager", "`alerts` is missing"),
        ({"alerts": "nope"}, "alertmanager", "expected a list, got str"),
        ({"alerts": []}, "alertmanager", "`alerts` is empty"),
        ({"alerts": [1]}, "alertmanager", r"alerts\[0\]: expected an object, got int"),
        ({"alerts": [{"labels": ["a"]}]}, "alertmanager", "labels: expected an object, got list"),
        ({"alerts": [{"labels": {"a": {"b": 1}}}]}, "alertmanager", "labels.a: expected a string"),
        ({"alerts": [{"status": "weird"}]}, "alertmanager", "is not firing or resolved"),
        ({"alerts": [{"fingerprint": "x" * 300}]}, "alertmanager", "fingerprint: is 300"),
        ({"alerts": [{"status": 5}]}, "alertmanager", "is not firing or resolved"),
        ({"event": {"event_type": "incident.triggered"}}, "pagerduty", "event.data.id: is missing"),
        ({"event": "x"}, "pagerduty", "event: expected an object, got str"),
        ({"Type": "Notification", "TopicArn": "a"}, "cloudwatch", "Message: is missing"),
        ({"trigger": "t", "status": "MAYBE"}, "zabbix", "is not PROBLEM, OK or RESOLVED"),
        ({"title": ["x"]}, "generic", "title: expected a string, got list"),
        ({"title": "   "}, "generic", "title: is empty"),
        ({"title": "x", "labels": "a=b"}, "generic", "labels: expected an object, got str"),
        ({"state": "weird", "ruleName": "r"}, "grafana", "state: 'weird' is not one of"),
    ],
)
def test_bad_payloads_are_clear_ingest_errors(payload, driver, message):
    with pytest.raises(IngestError, match=message):
        parse(payload, driver)


def test_huge_label_sets_are_refused():
    labels = {f"l{i}": "v" for i in range(1000)}
    with pytest.raises(IngestError, match=r"alerts\[0\].labels: 1000 entries \(limit 256\)"):
        parse({"alerts": [{"labels": labels}]}, "alertmanager")
    with pytest.raises(IngestError, match="limit 4096"):
        parse({"alerts": [{"labels": {"a": "v" * 5000}}]}, "alertmanager")
    with pytest.raises(IngestError, match="limit 10000"):
        parse({"alerts": [{}] * 10_001}, "alertmanager")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("bad \udcff text", "lone surrogate"),
        (b"\xff\xfe", "not valid UTF-8"),
        ("nul \x00 here", "NUL character"),
    ],
)
def test_non_utf8_text_is_refused(value, message):
    with pytest.raises(IngestError, match=message):
        parse({"alerts": [{"labels": {"host": value}}]}, "alertmanager")
    with pytest.raises(IngestError, match=message):
        parse({"title": value}, "generic")


def test_long_titles_are_cut_not_refused():
    alert = parse({"title": "t" * 5000, "description": "d" * 100_000}, "generic").alerts[0]
    assert len(alert["title"]) == 1024 and alert["title"].endswith("…")
    assert len(alert["description"]) == 65_536


def test_deeply_nested_json_is_a_clear_error():
    deep = "[" * 100_000 + "]" * 100_000
    payload = load("inbound/aws-cloudwatch-sns-alarm.json")
    with pytest.raises(IngestError, match="Message: is not a CloudWatch alarm"):
        parse({**payload, "Message": deep})
    nested: object = "leaf"
    for _ in range(5000):
        nested = {"x": nested}
    with pytest.raises(IngestError, match="labels.x: expected a string, got dict"):
        parse({"alerts": [{"labels": nested}]}, "alertmanager")
    assert parse({"title": "ok", "extra": nested}, "generic").alerts


def test_bad_timestamps_are_dropped_not_fatal():
    alert = parse({"alerts": [{"startsAt": "yesterday", "endsAt": 10**30}]}, "alertmanager")
    assert alert.alerts[0]["starts_at"] is None
    with pytest.raises(IngestError, match=r"startsAt: expected a string, got list"):
        parse({"alerts": [{"startsAt": [1]}]}, "alertmanager")


def test_node_config_rejects_unknown_driver_listing_known_ones():
    with pytest.raises(ValidationError) as err:
        Config(driver="nagios")
    assert "unknown ingest driver 'nagios' (known: alertmanager, auto, cloudwatch" in str(err.value)
    with pytest.raises(ValidationError):
        Config(driver="auto", unknown_key=1)
    with pytest.raises(DefinitionError, match="unknown ingest format 'nagios'"):
        get_format("nagios")
