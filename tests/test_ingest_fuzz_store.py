"""Fuzzing the incident store with parsed alerts: whatever a format accepts, the store keeps as given."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.alert_fuzz import mutated

from nodes.errors import IngestError
from nodes.incidents import store
from nodes.ingest import FORMATS, get_format


@pytest.fixture(scope="module")
def fuzz_db(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'incidents.db'}"
    yield url
    store.dispose_engines()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
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
