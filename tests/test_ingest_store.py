"""Incident store on SQLite and PostgreSQL: lifecycle, duplicates, state, and parallel writers."""

from __future__ import annotations

import json
import multiprocessing
import queue as queue_module
from collections import Counter
from pathlib import Path

import pytest

from nodes.errors import IngestError
from nodes.incidents import store
from nodes.ingest import get_format

FIXTURES = Path(__file__).resolve().parent / "fixtures"


pytestmark = pytest.mark.usefixtures("fresh_engines")


def alerts_of(name: str) -> tuple[list[dict], str, str]:
    payload = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    parsed = get_format("alertmanager").parse(payload, None)
    return parsed.alerts, parsed.group_key, parsed.title


def alert(fp: str, status: str = "firing", severity: str = "warning", **labels) -> dict:
    return {
        "fingerprint": fp,
        "status": status,
        "severity": severity,
        "title": f"alert {fp}",
        "description": "",
        "labels": {"fp": fp, **labels},
        "annotations": {},
        "source": "generic",
        "starts_at": None,
        "ends_at": None,
        "generator_url": None,
    }


def ingest(url, alerts, key="group", title="Group"):
    return store.ingest(alerts, key=key, title=title, source="generic", database_url=url)


def test_firing_repeat_resolve_lifecycle(db_url):
    firing, key, title = alerts_of("alertmanager/firing-group.json")
    resolved, _, _ = alerts_of("alertmanager/resolved-group.json")

    first = store.ingest(firing, key=key, title=title, source="alertmanager", database_url=db_url)
    incident = first["incident"]
    assert first["created"] and not first["duplicate"]
    assert first["counts"] == {"received": 2, "new": 2, "updated": 0, "resolved": 0}
    assert (incident["status"], incident["severity"], incident["title"]) == (
        "open",
        "critical",
        "HighMemory",
    )
    assert (incident["alert_count"], incident["firing_count"]) == (2, 2)
    assert incident["labels"] == {"alertname": "HighMemory", "job": "node"}
    assert incident["key"] == key and incident["notification_state"] == {}
    assert incident["created_at"].endswith("Z") and incident["resolved_at"] is None
    assert [a["receive_count"] for a in incident["alerts"]] == [1, 1]
    assert incident["alerts"][0]["labels"]["instance"] == "db-01"

    repeat = store.ingest(firing, key=key, title=title, source="alertmanager", database_url=db_url)
    assert repeat["duplicate"] and not repeat["created"]
    assert repeat["incident"]["id"] == incident["id"]
    assert repeat["counts"] == {"received": 2, "new": 0, "updated": 2, "resolved": 0}
    assert [a["receive_count"] for a in repeat["incident"]["alerts"]] == [2, 2]

    done = store.ingest(resolved, key=key, title=title, source="alertmanager", database_url=db_url)
    assert not done["duplicate"]
    assert done["counts"] == {"received": 2, "new": 0, "updated": 2, "resolved": 2}
    assert done["incident"]["id"] == incident["id"]
    assert done["incident"]["status"] == "resolved"
    assert done["incident"]["firing_count"] == 0
    assert done["incident"]["resolved_at"] is not None
    assert done["incident"]["severity"] == "critical"

    again = store.ingest(resolved, key=key, title=title, source="alertmanager", database_url=db_url)
    assert again["duplicate"] and again["incident"]["id"] == incident["id"]
    assert again["incident"]["resolved_at"] == done["incident"]["resolved_at"]

    refire = store.ingest(firing, key=key, title=title, source="alertmanager", database_url=db_url)
    assert refire["created"] and refire["incident"]["id"] != incident["id"]
    assert refire["incident"]["status"] == "open"


def test_ingest_output_is_what_was_stored(db_url):
    """The node's incident is computed, not read back: it must match the rows exactly."""
    ingest(db_url, [alert("a", severity="critical"), alert("b")])
    ingest(db_url, [alert("c", severity="info", zone="eu")])
    result = ingest(db_url, [alert("b", "resolved"), alert("d"), alert("a", severity="critical")])
    stored = store.get_incident(result["incident"]["id"], database_url=db_url)
    assert result["incident"] == stored
    assert [a["fingerprint"] for a in stored["alerts"]] == ["a", "b", "c", "d"]
    assert [a["receive_count"] for a in stored["alerts"]] == [2, 2, 1, 1]


def test_incident_resolves_only_when_all_alerts_resolve(db_url):
    ingest(db_url, [alert("a", severity="critical"), alert("b")])
    half = ingest(db_url, [alert("a", "resolved", "critical")])
    assert half["incident"]["status"] == "open"
    assert half["counts"]["resolved"] == 1 and not half["duplicate"]
    assert half["incident"]["severity"] == "critical"  # worst alert, resolved or not
    assert half["incident"]["firing_count"] == 1
    flap = ingest(db_url, [alert("a", severity="critical")])
    assert not flap["duplicate"] and flap["incident"]["firing_count"] == 2
    new_alert = ingest(db_url, [alert("c", severity="info")])
    assert new_alert["counts"]["new"] == 1 and not new_alert["duplicate"]
    assert new_alert["incident"]["alert_count"] == 3
    end = ingest(db_url, [alert(x, "resolved") for x in "abc"])
    assert end["incident"]["status"] == "resolved"
    assert end["counts"] == {"received": 3, "new": 0, "updated": 3, "resolved": 3}


def test_resolved_only_delivery_for_unknown_group_is_recorded_resolved(db_url):
    result = ingest(db_url, [alert("x", "resolved")], key="never-seen")
    assert result["created"]
    assert result["incident"]["status"] == "resolved"
    assert result["incident"]["resolved_at"] is not None


def test_same_fingerprint_twice_in_one_payload_counts_once(db_url):
    result = ingest(db_url, [alert("a"), alert("a", severity="critical")])
    assert result["counts"]["received"] == 1
    assert result["incident"]["alerts"][0]["severity"] == "critical"


def test_groups_are_separate_incidents(db_url):
    one = ingest(db_url, [alert("a")], key="one")
    two = ingest(db_url, [alert("a")], key="two")
    assert one["incident"]["id"] != two["incident"]["id"]
    assert two["created"] and two["counts"]["new"] == 1


def test_list_and_get_incidents(db_url):
    first = ingest(db_url, [alert("a", severity="critical")], key="k1", title="First")
    ingest(db_url, [alert("b")], key="k2", title="Second")
    ingest(db_url, [alert("a", "resolved", "critical")], key="k1")

    listed = store.list_incidents(database_url=db_url)
    assert [i["title"] for i in listed] == ["First", "Second"]  # most recently updated first
    assert listed[0]["status"] == "resolved" and listed[0]["alert_count"] == 1
    assert listed[1]["firing_count"] == 1
    assert set(listed[0]) == {
        "id",
        "key",
        "status",
        "severity",
        "title",
        "source",
        "alert_count",
        "firing_count",
        "created_at",
        "updated_at",
        "resolved_at",
    }
    assert [i["title"] for i in store.list_incidents("open", database_url=db_url)] == ["Second"]
    assert len(store.list_incidents(limit=1, database_url=db_url)) == 1
    with pytest.raises(IngestError, match="status: 'closed' is not one of open, resolved"):
        store.list_incidents("closed", database_url=db_url)

    full = store.get_incident(first["incident"]["id"], database_url=db_url)
    assert full["status"] == "resolved" and full["alerts"][0]["fingerprint"] == "a"
    assert full["alerts"][0]["receive_count"] == 2
    assert store.get_incident(999_999, database_url=db_url) is None


def test_notification_state_merges_and_reaches_the_incident(db_url):
    incident_id = ingest(db_url, [alert("a")])["incident"]["id"]
    store.save_notification_state(incident_id, {"slack": {"ts": "1.2"}}, database_url=db_url)
    merged = store.save_notification_state(
        incident_id, {"slack": {"channel": "C1"}, "email": {"id": "m1"}}, database_url=db_url
    )
    assert merged == {"slack": {"ts": "1.2", "channel": "C1"}, "email": {"id": "m1"}}
    assert store.get_incident(incident_id, database_url=db_url)["notification_state"] == merged
    assert ingest(db_url, [alert("a")])["incident"]["notification_state"] == merged
    with pytest.raises(IngestError, match="incident 424242 not found"):
        store.save_notification_state(424242, {"x": 1}, database_url=db_url)
    with pytest.raises(IngestError, match="not JSON"):
        store.save_notification_state(incident_id, {"x": object()}, database_url=db_url)


def test_database_url_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store.database_url() == f"sqlite:///{tmp_path}/.opsflow/incidents.db"
    monkeypatch.setenv("OPSFLOW_DATABASE_URL", "postgres://u:p@h/db")
    assert store.database_url() == "postgresql+psycopg://u:p@h/db"
    assert store.database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert store.database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_default_sqlite_file_is_created_with_wal(monkeypatch, tmp_path):
    monkeypatch.delenv("OPSFLOW_DATABASE_URL", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    ingest(None, [alert("a")])
    assert (tmp_path / ".opsflow" / "incidents.db").exists()
    with store.get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    assert store.get_engine() is store.get_engine(None)  # one engine per URL per process


def test_unreachable_database_is_a_retryable_error_without_the_password():
    url = "postgresql+psycopg://opsflow:hunter2-secret@127.0.0.1:1/nowhere"
    with pytest.raises(IngestError) as err:
        ingest(url, [alert("a")])
    assert err.value.retryable
    assert "hunter2-secret" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


def test_unsupported_or_malformed_urls_are_clear_errors():
    with pytest.raises(IngestError, match="unsupported database 'mysql'"):
        ingest("mysql://u:secret@h/db", [alert("a")])
    with pytest.raises(IngestError, match="database_url is not usable") as err:
        ingest("not a url at all secret", [alert("a")])
    assert "secret" not in str(err.value)
    assert not err.value.retryable


def test_empty_ingest_is_refused(tmp_path):
    with pytest.raises(IngestError, match="no alerts"):
        ingest(f"sqlite:///{tmp_path}/x.db", [])


# --- parallel workers -------------------------------------------------------------------

WORKERS = 4
ROUNDS = 5
SPAN = 10  # each worker fires fingerprints [5w, 5w + 10): neighbours overlap by 5


def _my_fingerprints(worker: int) -> list[str]:
    return [f"fp-{i:02d}" for i in range(worker * 5, worker * 5 + SPAN)]


def _worker(url: str, worker: int, barrier, results) -> None:
    """One process: fire the shared groups ROUNDS times, wait for all, then resolve its part."""
    try:
        report = {"worker": worker, "shared": Counter(), "same": Counter(), "resolve": Counter()}
        barrier.wait(timeout=60)
        for _ in range(ROUNDS):
            mine = ingest(url, [alert(fp) for fp in _my_fingerprints(worker)], key="shared")
            report["shared"].update(mine["counts"])
            report["shared"]["created"] += mine["created"]
            same = ingest(url, [alert(f"same-{i}") for i in range(SPAN)], key="same")
            report["same"].update(same["counts"])
            report["same"]["created"] += same["created"]
        barrier.wait(timeout=60)
        done = ingest(url, [alert(fp, "resolved") for fp in _my_fingerprints(worker)], "shared")
        report["resolve"].update(done["counts"])
        results.put({k: dict(v) if isinstance(v, Counter) else v for k, v in report.items()})
    except BaseException as exc:  # the parent asserts on what every worker reports
        results.put({"worker": worker, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        store.dispose_engines()


def run_workers(url: str) -> list[dict]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(WORKERS)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, w, barrier, results)) for w in range(WORKERS)]
    for p in procs:
        p.start()
    reports = []
    try:
        for _ in procs:
            reports.append(results.get(timeout=90))
    except queue_module.Empty:
        pytest.fail(f"only {len(reports)} of {WORKERS} workers reported: {reports}")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, errors
    return reports


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_parallel_workers_never_duplicate_or_lose_updates(backend, request, tmp_path):
    url = (
        f"sqlite:///{tmp_path / 'parallel.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    ingest(url, [alert("warm-up")], key="warm-up")  # schema exists; workers race on data only
    reports = run_workers(url)

    union = sorted({fp for w in range(WORKERS) for fp in _my_fingerprints(w)})
    assert len(union) == 5 * (WORKERS - 1) + SPAN
    shared = sum((Counter(r["shared"]) for r in reports), Counter())
    same = sum((Counter(r["same"]) for r in reports), Counter())
    resolve = sum((Counter(r["resolve"]) for r in reports), Counter())
    # exactly one worker opened each incident, every alert was new exactly once
    assert shared["created"] == 1 and same["created"] == 1
    assert shared["new"] == len(union)
    assert shared["received"] == WORKERS * ROUNDS * SPAN
    assert shared["updated"] == WORKERS * ROUNDS * SPAN - len(union)
    assert same["new"] == SPAN and same["updated"] == WORKERS * ROUNDS * SPAN - SPAN
    # every alert went firing -> resolved exactly once
    assert resolve["resolved"] == len(union) and resolve["new"] == 0

    incidents = store.list_incidents(limit=100, database_url=url)
    by_key = Counter(i["key"] for i in incidents)
    assert by_key == {"warm-up": 1, "shared": 1, "same": 1}
    shared_incident = next(i for i in incidents if i["key"] == "shared")
    full = store.get_incident(shared_incident["id"], database_url=url)
    assert full["status"] == "resolved" and full["firing_count"] == 0
    assert sorted(a["fingerprint"] for a in full["alerts"]) == union
    for a in full["alerts"]:
        covering = sum(a["fingerprint"] in _my_fingerprints(w) for w in range(WORKERS))
        assert a["receive_count"] == covering * (ROUNDS + 1), a["fingerprint"]
    same_incident = store.get_incident(
        next(i["id"] for i in incidents if i["key"] == "same"), database_url=url
    )
    assert same_incident["status"] == "open" and same_incident["alert_count"] == SPAN
    assert {a["receive_count"] for a in same_incident["alerts"]} == {WORKERS * ROUNDS}
