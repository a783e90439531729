"""Re-firing after a resolve is a new run in every format; an exact repeat is a duplicate.

Through the real receiver (uvicorn on 127.0.0.1) and the session's Prefect server,
direct and journaled. Grafana legacy, CloudWatch, Datadog, PagerDuty, Zabbix and a
generic payload carry no start time on every delivery: the re-fire payload is the very
same bytes as the first firing, so only the episode the receiver keeps tells them apart.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from test_receiver import ThreadedServer, alertmanager, deployments, unique  # noqa: F401

pytestmark = pytest.mark.timeout(240)

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"


def fixture(name: str) -> dict:
    return json.loads((INBOUND / name).read_text())


def am(marker: str, status: str, episode: int) -> dict:
    return alertmanager(marker, status, starts=f"2024-05-0{episode}T10:00:00Z")


def grafana_unified(marker: str, status: str, episode: int) -> dict:
    payload = fixture("grafana-unified-firing.json")
    alert = payload["alerts"][0]
    alert["labels"]["alertname"] = marker
    alert["fingerprint"] = marker[-16:]
    alert["startsAt"] = f"2024-05-0{episode}T10:00:00Z"
    alert["status"] = payload["status"] = status
    if status == "resolved":
        alert["endsAt"] = f"2024-05-0{episode}T11:00:00Z"
    payload["alerts"] = [alert]
    payload["groupKey"] = f'{{}}:{{alertname="{marker}"}}'
    return payload


def grafana_legacy(marker: str, status: str, episode: int) -> dict:
    payload = fixture("grafana-legacy-alerting.json" if status == "firing" else "grafana-legacy-ok.json")
    payload["ruleName"] = marker
    return payload


def cloudwatch(marker: str, status: str, episode: int) -> dict:
    payload = fixture("aws-cloudwatch-sns-alarm.json")
    message = json.loads(payload["Message"])
    message["AlarmName"] = marker
    message["NewStateValue"] = "ALARM" if status == "firing" else "OK"
    payload["Message"] = json.dumps(message)
    return payload


def datadog(marker: str, status: str, episode: int) -> dict:
    payload = fixture("datadog-webhook-default-template-filled.json")
    payload["title"] = f"[{'Triggered' if status == 'firing' else 'Recovered'}] {marker}"
    return payload


def pagerduty(marker: str, status: str, episode: int) -> dict:
    payload = fixture("pagerduty-v3-incident-triggered.json")
    payload["event"]["data"]["id"] = marker
    if status == "resolved":
        payload["event"]["event_type"] = "incident.resolved"
        payload["event"]["data"]["status"] = "resolved"
    return payload


def zabbix(marker: str, status: str, episode: int) -> dict:
    payload = fixture("zabbix-zulip-problem.json" if status == "firing" else "zabbix-zulip-ok.json")
    payload["trigger_id"] = marker
    return payload


def generic(marker: str, status: str, episode: int) -> dict:
    return {"title": marker, "status": status, "severity": "critical", "labels": {"host": "db-01"}}


FORMATS: dict[str, Callable[[str, str, int], dict]] = {
    "alertmanager": am,
    "grafana-unified": grafana_unified,
    "grafana-legacy": grafana_legacy,
    "cloudwatch": cloudwatch,
    "datadog": datadog,
    "pagerduty": pagerduty,
    "zabbix": zabbix,
    "generic": generic,
}


@pytest.fixture(scope="module", params=[False, True], ids=["direct", "journal"])
def receiver(request, deployments, tmp_path_factory):  # noqa: F811
    from deployments.receiver.app import create_app

    journal = f"sqlite:///{tmp_path_factory.mktemp('refire') / 'j.db'}" if request.param else False
    with ThreadedServer(create_app(timeout=60, journal=journal)) as server:
        yield server.url


def run_of(client: httpx.Client, answer: dict) -> str:
    """The answer's flow run id (with a journal: once the dispatcher made it)."""
    deadline = time.monotonic() + 60
    while answer["flow_run_id"] is None:
        assert time.monotonic() < deadline, answer
        time.sleep(0.1)
        delivery = client.get(f"/deliveries/{answer['delivery_id']}").json()
        answer = {**answer, "flow_run_id": delivery["flow_run_id"]}
    return answer["flow_run_id"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_refiring_after_resolve_is_a_new_run_and_a_repeat_is_not(receiver, fmt):
    make = FORMATS[fmt]
    marker = unique("Refire")
    with httpx.Client(base_url=receiver, timeout=60) as client:

        def post(payload: dict) -> tuple[str, bool]:
            response = client.post("/pipeline", json=copy.deepcopy(payload))
            assert response.status_code == 202, response.text
            answer = response.json()
            return run_of(client, answer), answer["duplicate"]

        fired, dup = post(make(marker, "firing", 1))
        assert dup is False
        assert post(make(marker, "firing", 1)) == (fired, True)  # an exact repeat
        resolved, dup = post(make(marker, "resolved", 1))
        assert dup is False and resolved != fired
        assert post(make(marker, "resolved", 1)) == (resolved, True)
        refired, dup = post(make(marker, "firing", 2))
        assert dup is False and refired not in {fired, resolved}, fmt
        assert post(make(marker, "firing", 2)) == (refired, True)
        again, dup = post(make(marker, "resolved", 2))
        assert dup is False and again not in {fired, resolved, refired}, fmt


def test_an_alert_forgotten_after_its_retention_never_reuses_an_old_episodes_key(deployments):  # noqa: F811
    """Episode rows are pruned after a month of silence; the next firing must be a new run,
    not the first episode's (a counter restarting at 1 would give the first key again)."""
    from deployments.receiver.app import create_app

    app = create_app(timeout=60)
    payload = generic(unique("Forgotten"), "firing", 1)
    with ThreadedServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        first = client.post("/pipeline", json=payload).json()
        client.post("/pipeline", json=generic(payload["title"], "resolved", 1))
        second = client.post("/pipeline", json=payload).json()
        assert app.state.episodes.prune(older_than=-1) >= 1
        third = client.post("/pipeline", json=payload).json()
        repeat = client.post("/pipeline", json=payload).json()
    assert not third["duplicate"] and third["flow_run_id"] not in {
        first["flow_run_id"],
        second["flow_run_id"],
    }
    assert repeat["duplicate"] and repeat["flow_run_id"] == third["flow_run_id"]


@pytest.mark.parametrize(
    "journal", ["", pytest.param("postgresql", marks=pytest.mark.postgres)], ids=["direct", "pg-journal"]
)
def test_concurrent_deliveries_of_one_refire_make_one_run(deployments, request, journal):  # noqa: F811
    """Senders retrying at once (or two receivers) agree on the one new episode."""
    from concurrent.futures import ThreadPoolExecutor

    from deployments.receiver.app import create_app

    url = request.getfixturevalue("postgres_url") if journal else False
    marker = unique("Concurrent")
    with ThreadedServer(create_app(timeout=60, journal=url)) as server:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            first = run_of(client, client.post("/pipeline", json=grafana_legacy(marker, "firing", 1)).json())
            client.post("/pipeline", json=grafana_legacy(marker, "resolved", 1))
            with ThreadPoolExecutor(8) as pool:
                answers = list(
                    pool.map(
                        lambda _: client.post("/pipeline", json=grafana_legacy(marker, "firing", 2)), range(8)
                    )
                )
            assert {a.status_code for a in answers} == {202}
            runs = {run_of(client, a.json()) for a in answers}
    assert len(runs) == 1 and first not in runs
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 7
