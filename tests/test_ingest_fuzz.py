"""Fuzzing the alert parsers: whatever arrives, the answer is alerts or a clean IngestError."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nodes.errors import IngestError
from nodes.ingest import FORMATS, detect_format, get_format, store
from nodes.ingest.alert import SEVERITIES

FIXTURES = Path(__file__).resolve().parent / "fixtures"

SEEDS = {
    "alertmanager": ["alertmanager/firing-group.json", "inbound/alertmanager-firing-group.json"],
    "grafana": ["inbound/grafana-unified-firing.json", "inbound/grafana-legacy-alerting.json"],
    "pagerduty": ["inbound/pagerduty-v3-incident-triggered.json"],
    "cloudwatch": ["inbound/aws-cloudwatch-sns-alarm.json"],
    "zabbix": ["inbound/zabbix-zulip-problem.json"],
    "datadog": ["inbound/datadog-webhook-default-template-filled.json"],
    "generic": [],
}
GENERIC_SEED = {"title": "Disk full", "severity": "high", "labels": {"host": "a"}}

# any text, lone surrogates and NUL included: what a broken sender might produce
TEXT = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=20)
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | TEXT
    | st.binary(max_size=8)
)
JSONISH = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


def seeds(name: str) -> list[dict]:
    loaded = [json.loads((FIXTURES / f).read_text(encoding="utf-8")) for f in SEEDS[name]]
    return loaded or [GENERIC_SEED]


def paths(value, prefix=()):
    """Every path into a JSON value, the root included."""
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def replace(value, path, new):
    if not path:
        return new
    target = value
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return value


@st.composite
def mutated(draw, name: str):
    """A real payload of format `name` with one to three subtrees replaced by junk."""
    payload = copy.deepcopy(draw(st.sampled_from(seeds(name))))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not isinstance(payload, dict):
            break
        candidates = list(paths(payload))[1:]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        payload = replace(payload, path, draw(JSONISH))
    return payload


def check_parsed(parsed) -> None:
    if parsed.ignored:
        assert isinstance(parsed.ignored, str) and parsed.alerts == []
        return
    assert parsed.alerts and isinstance(parsed.group_key, str) and parsed.group_key
    for alert in parsed.alerts:
        assert alert["status"] in ("firing", "resolved")
        assert alert["severity"] in SEVERITIES
        assert isinstance(alert["fingerprint"], str) and alert["fingerprint"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert["labels"].items())
        json.dumps(alert).encode("utf-8")  # storable: valid UTF-8 all the way down


FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", sorted(FORMATS))
@FUZZ
@given(data=st.data())
def test_parser_gives_alerts_or_a_clean_error(name, data):
    fmt = get_format(name)
    payload = data.draw(st.one_of(mutated(name), st.dictionaries(TEXT, JSONISH, max_size=6)))
    try:
        parsed = fmt.parse(payload, fmt.Config())
    except IngestError as exc:
        assert str(exc) and not exc.retryable
        return
    check_parsed(parsed)


@FUZZ
@given(payload=JSONISH)
def test_detection_gives_a_format_or_a_clean_error(payload):
    try:
        name = detect_format(payload)
    except IngestError:
        return
    assert name in FORMATS


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'incidents.db'}"
    yield url
    store.dispose_engines()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_parses_can_be_stored(fuzz_db, data):
    name = data.draw(st.sampled_from(sorted(FORMATS)))
    payload = data.draw(mutated(name))
    fmt = get_format(name)
    try:
        parsed = fmt.parse(payload, fmt.Config())
    except IngestError:
        return
    if parsed.ignored:
        return
    result = store.ingest(
        parsed.alerts, key=parsed.group_key, title=parsed.title, source=name, database_url=fuzz_db
    )
    stored = {a["fingerprint"]: a for a in result["incident"]["alerts"]}
    for alert in parsed.alerts:
        assert stored[alert["fingerprint"]]["labels"] == alert["labels"]
