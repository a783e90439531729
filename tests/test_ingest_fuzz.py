"""Fuzzing the alert formats: whatever arrives, the answer is storable alerts or a clean IngestError.

Each format gets payloads shaped like it (see `support.alert_fuzz`) and arbitrary JSON
objects. Every payload also goes through auto-detection, as the ingest node's `auto`
driver does. 10,000 cases per format under the `slow` marker (CI runs them); the
unmarked variants run a few hundred for a quick local check. That what parses can be
stored is in test_ingest_fuzz_store.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from fuzz_settings import FEW, MANY
from hypothesis import given, settings
from hypothesis import strategies as st
from support.alert_fuzz import JSONISH, JUNK, encode, payloads

from nodes.errors import IngestError
from nodes.ingest import FORMATS, HTTP_KEY, detect_format, get_format
from nodes.ingest.alert import MAX_NAME, SEVERITIES


def storable_text(*texts: str) -> None:
    """No lone surrogate (not UTF-8) and no NUL (PostgreSQL refuses it in text and JSON)."""
    joined = "".join(texts)
    joined.encode("utf-8")
    assert "\x00" not in joined


def check_error(exc: IngestError) -> None:
    message = str(exc)
    assert message and len(message) < 4096 and not exc.retryable
    assert ": " in message, "the message names where the problem is"
    assert "Traceback" not in message
    storable_text(message)


def check_parsed(parsed) -> None:
    """What the incident store needs from every alert (columns in nodes/incidents/tables.py)."""
    if parsed.ignored:
        assert isinstance(parsed.ignored, str) and parsed.alerts == []
        storable_text(parsed.ignored, *(str(v) for v in parsed.extra.values()))
        return
    assert parsed.alerts and isinstance(parsed.group_key, str) and parsed.group_key
    assert isinstance(parsed.title, str)
    storable_text(parsed.group_key, parsed.title)
    for alert in parsed.alerts:
        assert alert["status"] in ("firing", "resolved")
        assert alert["severity"] in SEVERITIES
        assert isinstance(alert["fingerprint"], str) and 0 < len(alert["fingerprint"]) <= MAX_NAME
        assert isinstance(alert["title"], str) and alert["title"]
        assert isinstance(alert["description"], str)
        assert isinstance(alert["source"], str) and 0 < len(alert["source"]) <= 64
        for mapping in (alert["labels"], alert["annotations"]):
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items())
        for moment in (alert["starts_at"], alert["ends_at"]):
            assert moment is None or (isinstance(moment, str) and len(moment) <= 64)
        assert alert["generator_url"] is None or isinstance(alert["generator_url"], str)
        texts = [alert[k] or "" for k in ("fingerprint", "title", "description", "source", "generator_url")]
        for mapping in (alert["labels"], alert["annotations"]):
            texts += [*mapping, *mapping.values()]
        storable_text(*texts, alert["starts_at"] or "", alert["ends_at"] or "")
        json.dumps(alert, allow_nan=False)


def parse_or_clean_error(name: str, payload: dict, config=None) -> None:
    fmt = get_format(name)
    try:
        parsed = fmt.parse(payload, config or fmt.Config())
    except IngestError as exc:
        check_error(exc)
    else:
        check_parsed(parsed)


def auto_detected(payload: dict) -> None:
    """What the `auto` driver does: detect, then parse with the detected format."""
    try:
        name = detect_format(payload)
    except IngestError as exc:
        check_error(exc)
        return
    assert name in FORMATS
    parse_or_clean_error(name, payload)


def fuzz_format(name: str, payload: dict) -> None:
    parse_or_clean_error(name, payload)
    auto_detected(payload)


SECRET = "whsec-fuzz-4c1d"


@st.composite
def pagerduty_deliveries(draw) -> tuple[dict, object]:
    """A PagerDuty payload with the config to parse it: unsigned, or signed well, badly or not at all."""
    fmt = get_format("pagerduty")
    payload = draw(payloads("pagerduty"))
    mode = draw(st.sampled_from(["plain", "plain", "signed", "signed", "bad-signature", "junk"]))
    if mode == "plain":
        return payload, fmt.Config()
    raw = encode(payload)
    body = draw(st.sampled_from([raw, raw.encode("utf-8")]))
    signature = "v1=" + hmac.new(SECRET.encode(), raw.encode("utf-8"), hashlib.sha256).hexdigest()
    if mode == "bad-signature":
        signature = draw(JUNK | st.sampled_from(["v1=", "v1=00, v0=11", signature[:-1], signature.upper()]))
    headers = {draw(st.sampled_from(["X-PagerDuty-Signature", "x-pagerduty-signature"])): signature}
    http = {"raw_body": body, "headers": headers} if mode != "junk" else draw(JUNK)
    return {HTTP_KEY: http, **payload}, fmt.Config(signing_secret=SECRET)


def _format_test(name: str, size: settings):
    @size
    @given(payload=payloads(name))
    def test(payload):
        fuzz_format(name, payload)

    return test


def _pagerduty_test(size: settings):
    @size
    @given(delivery=pagerduty_deliveries())
    def test(delivery):
        payload, config = delivery
        parse_or_clean_error("pagerduty", payload, config)
        auto_detected({k: v for k, v in payload.items() if k != HTTP_KEY})

    return test


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(set(FORMATS) - {"pagerduty"}))
def test_format_gives_alerts_or_a_clean_error(name):
    """10,000 payloads per format, each parsed by its format and by auto-detection."""
    _format_test(name, MANY)()


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_pagerduty_gives_alerts_or_a_clean_error_signed_or_not():
    _pagerduty_test(MANY)()


@pytest.mark.parametrize("name", sorted(set(FORMATS) - {"pagerduty"}))
def test_format_gives_alerts_or_a_clean_error_quick(name):
    _format_test(name, FEW)()


def test_pagerduty_gives_alerts_or_a_clean_error_quick():
    _pagerduty_test(FEW)()


@FEW
@given(payload=JSONISH | st.lists(JSONISH, max_size=3))
def test_detection_gives_a_format_or_a_clean_error(payload):
    try:
        name = detect_format(payload)
    except IngestError as exc:
        check_error(exc)
        return
    assert name in FORMATS


@pytest.mark.parametrize(
    "payload",
    [
        {"title": "t", "starts_at": 10**4299},  # int / 1000 overflowed a float
        {"title": "t", "starts_at": "9" * 5000},  # int() refuses over 4,300 digits
        {"title": "t", "ends_at": -(10**400)},
    ],
)
def test_times_no_clock_can_hold_are_dropped_not_a_crash(payload):
    """Found by the fuzzing above: an out-of-range epoch raised OverflowError/ValueError."""
    alert = get_format("generic").parse(payload).alerts[0]
    assert alert["starts_at"] is None and alert["ends_at"] is None


def test_undetectable_payload_keys_are_shown_escaped_and_short():
    """Found by the fuzzing above: raw keys (NUL, lone surrogates, 70 kB) went into the message."""
    with pytest.raises(IngestError) as caught:
        detect_format({"a\x00b": 1, "\ud800": 2, "k" * 70_000: 3})
    message = str(caught.value)
    check_error(caught.value)
    assert "a\\x00b" in message and "\\ud800" in message and "k" * 40 + "…" in message
