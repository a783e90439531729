"""Alertmanager's `truncatedAlerts` is recorded on the incident and said in the message.

Alertmanager sends at most `max_alerts` alerts of a group and counts the rest in
`truncatedAlerts`; without it a notification reads as if the group were that small.
Through the real ingest node and incident store (SQLite and PostgreSQL) and the notify
message builder.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from nodes.errors import IngestError
from nodes.incidents import store
from nodes.ingest import get_format

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, monkeypatch):
    url = (
        f"sqlite:///{tmp_path / 'incidents.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", url)
    yield url
    store.dispose_engines()


def group(truncated) -> dict:
    payload = json.loads((INBOUND / "alertmanager-firing-group.json").read_text())
    payload["groupKey"] = f'{{}}:{{alertname="{uuid.uuid4().hex}"}}'
    payload["truncatedAlerts"] = truncated
    return payload


def run_ingest(payload: dict):
    from nodes.base import NodeContext, RunInfo
    from nodes.runtime import execute_node

    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="alert-triage"), payload=payload)
    output = execute_node("ingest", "ingest", {"driver": "auto"}, ctx)["output"]
    ctx.nodes["ingest"] = output
    ctx.incident = output["incident"]
    return ctx, output


def test_truncated_alerts_are_on_the_incident_and_in_the_message(db_url):
    from nodes.notify.message import build_message

    ctx, output = run_ingest(group(3))
    assert output["truncated_alerts"] == 3 and output["incident"]["truncated_alerts"] == 3
    assert store.get_incident(output["incident_id"], database_url=db_url)["truncated_alerts"] == 3
    assert "+3 alerts not included by Alertmanager" in build_message(ctx).text.splitlines()

    # the next delivery of the group says how many are left out now
    payload = ctx.payload
    payload["truncatedAlerts"] = 0
    ctx, output = run_ingest(payload)
    assert output["incident"]["truncated_alerts"] == 0 and "truncated_alerts" not in output
    assert "not included by Alertmanager" not in build_message(ctx).text


def test_a_store_made_before_the_column_gets_it(db_url):
    from sqlalchemy import text

    engine = store.get_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE opsflow_incidents DROP COLUMN truncated_alerts"))
    store.dispose_engines()
    _, output = run_ingest(group(2))
    assert store.get_incident(output["incident_id"], database_url=db_url)["truncated_alerts"] == 2


@pytest.mark.parametrize("bad", [-1, 1.5, "many", True, [1]])
def test_a_bad_truncated_alerts_is_a_clear_error(bad):
    with pytest.raises(IngestError, match="truncatedAlerts: expected a count of alerts"):
        get_format("alertmanager").parse(group(bad), None)
    assert get_format("alertmanager").parse(group("4"), None).extra == {"truncated_alerts": 4}
    assert get_format("alertmanager").parse(group(None), None).extra == {}
