"""A `\\u0000` anywhere in a payload is stripped at the door: never an endless 503 or journal retry.

PostgreSQL stores no NUL in text, so Prefect on PostgreSQL answered 503 to such a run
for ever (and a PostgreSQL journal refused the entry). Against real Prefect servers:
the session's (SQLite) and a `prefect server start` on a fresh PostgreSQL database,
with the receiver direct and journaled.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
from fuzz_settings import FEW
from hypothesis import given, settings
from hypothesis import strategies as st
from test_faults_prefect import PrefectServer, prefect_server  # noqa: F401
from test_receiver import ThreadedServer, alertmanager, deployments, unique  # noqa: F401

pytestmark = pytest.mark.timeout(300)

SEEDS = sorted((Path(__file__).resolve().parent / "fixtures" / "inbound").glob("*.json"))
FUZZ = settings(FEW, max_examples=40)


@st.composite
def with_nuls(draw) -> str:
    """A real payload with NULs put into some of its keys and strings (at least one), as JSON."""
    payload = json.loads(draw(st.sampled_from(SEEDS)).read_text())
    marks = [0]

    def spoil(text: str) -> str:
        if not draw(st.integers(0, 3)):
            marks[0] += 1
            at = draw(st.integers(0, len(text)))
            return text[:at] + "\x00" * draw(st.integers(1, 3)) + text[at:]
        return text

    def walk(value):
        if isinstance(value, dict):
            return {spoil(k): walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return spoil(value) if isinstance(value, str) else value

    payload = walk(payload)
    if not marks[0]:
        payload["\x00"] = "\x00"
    return json.dumps(payload)


def fuzz(url: str, api_url: str, journaled: bool) -> None:
    """Every NUL-spoiled payload is answered 202 (or 400), and its run is created (never a 503)."""
    pending: list[str] = []
    with httpx.Client(base_url=url, timeout=60) as client:

        @FUZZ
        @given(with_nuls())
        def case(body: str) -> None:
            answer = client.post("/pipeline", content=body, headers={"content-type": "application/json"})
            assert answer.status_code in (202, 400), answer.text
            if answer.status_code == 202 and journaled:
                pending.append(answer.json()["delivery_id"])

        case()
        deadline = time.monotonic() + 120
        for delivery_id in pending:  # the journal creates each run: no endless retry
            while (found := client.get(f"/deliveries/{delivery_id}").json())["status"] == "queued":
                assert time.monotonic() < deadline, found
                time.sleep(0.1)
            assert found["status"] == "created", found


def nul_payload(name: str) -> tuple[str, dict]:
    """The body as sent (NULs in keys and values, nested), and the payload once stripped."""
    payload = alertmanager(name)
    alert = payload["alerts"][0]
    alert["labels"]["job"] = "api\u0000server"
    alert["annotations"]["run\u0000book"] = "see \u0000 wiki"
    payload["extra\u0000"] = [{"deep\u0000er": ["\u0000", {"k": "v\u0000"}]}]
    stripped = json.loads(json.dumps(payload).replace("\\u0000", ""))
    return json.dumps(payload), stripped


def read_params(api_url: str, flow_run_id: str) -> dict:
    from prefect.client.orchestration import SyncPrefectClient

    with SyncPrefectClient(api_url) as client:
        return client.read_flow_run(flow_run_id).parameters


def post_until_run(url: str, body: str, api_url: str) -> tuple[dict, dict]:
    """POST the body; with a journal, wait for the run. Returns (answer, run parameters)."""
    headers = {"content-type": "application/json"}
    with httpx.Client(base_url=url, timeout=60) as client:
        answer = client.post("/pipeline", content=body, headers=headers)
        assert answer.status_code == 202, answer.text
        accepted = answer.json()
        run_id = accepted["flow_run_id"]
        deadline = time.monotonic() + 60
        while run_id is None:
            delivery = client.get(f"/deliveries/{accepted['delivery_id']}").json()
            assert delivery["status"] != "failed", delivery
            assert time.monotonic() < deadline, delivery  # an endless retry ends here
            run_id = delivery["flow_run_id"]
            time.sleep(0.1)
        again = client.post("/pipeline", content=body, headers=headers).json()
    assert again["duplicate"] is True
    return accepted, read_params(api_url, run_id)


@pytest.mark.parametrize("journaled", [False, True], ids=["direct", "journal"])
def test_nul_is_stripped_on_the_session_server(deployments, prefect_api, tmp_path, journaled):  # noqa: F811
    from deployments.receiver.app import create_app

    body, stripped = nul_payload(unique("Nul"))
    journal = f"sqlite:///{tmp_path / 'j.db'}" if journaled else False
    with ThreadedServer(create_app(timeout=60, journal=journal)) as server:
        _, params = post_until_run(server.url, body, prefect_api)
    assert params["payload"] == stripped
    assert "\x00" not in json.dumps(params, ensure_ascii=False)


@pytest.mark.postgres
def test_nul_is_stripped_for_prefect_on_postgresql(prefect_server, postgres_url, tmp_path):  # noqa: F811
    from deployments.receiver.app import create_app

    for journal in (False, postgres_url):
        body, stripped = nul_payload(unique("NulPg"))
        with ThreadedServer(create_app(prefect_server.api_url, timeout=30, journal=journal)) as server:
            _, params = post_until_run(server.url, body, prefect_server.api_url)
            fuzz(server.url, prefect_server.api_url, bool(journal))
        assert params["payload"] == stripped, journal


@pytest.mark.parametrize("journaled", [False, True], ids=["direct", "journal"])
def test_nul_fuzz_on_the_session_server(deployments, prefect_api, tmp_path, journaled):  # noqa: F811
    from deployments.receiver.app import create_app

    journal = f"sqlite:///{tmp_path / 'j.db'}" if journaled else False
    with ThreadedServer(create_app(timeout=60, journal=journal)) as server:
        fuzz(server.url, prefect_api, journaled)


def test_text_without_nul_is_left_as_sent(deployments, prefect_api):  # noqa: F811
    from deployments.receiver.app import create_app

    payload = alertmanager(unique("NoNul"))
    payload["alerts"][0]["annotations"]["literal"] = "a backslash then u0000: \\u0000"
    with ThreadedServer(create_app(timeout=60)) as server:
        _, params = post_until_run(server.url, json.dumps(payload), prefect_api)
    assert params["payload"] == payload
