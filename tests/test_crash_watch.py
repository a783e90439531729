"""Crash detection on SQLite: the database told by the API; the heartbeat watcher marks only silent runs.

Against the session's Prefect server (SQLite, as `prefect server start` is by default), and
one on PostgreSQL, which keeps Prefect's automation. The watcher is given the time of its
check, so a test sees "35 s later" without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

WINDOW = 35
MESSAGE = "Flow run marked Crashed: no heartbeat for 35 s (its worker or serving process died)"


def test_the_crash_window_is_90_s_by_default_at_least_35_s_and_a_mistyped_one_is_told(monkeypatch):
    from deployments.crashes import WITHIN_ENV, crash_message, crash_window
    from nodes.errors import UsageError

    monkeypatch.delenv(WITHIN_ENV, raising=False)
    assert crash_window() == 90
    monkeypatch.setenv(WITHIN_ENV, "10")
    assert crash_window() == 35
    assert crash_message() == MESSAGE
    monkeypatch.setenv(WITHIN_ENV, "a minute")
    with pytest.raises(UsageError, match="OPSFLOW_CRASH_AFTER_SECONDS must be a whole number of seconds"):
        crash_window()


async def _is_sqlite(flow_name: str | None = None, create: str | None = None) -> bool | None:
    from prefect.client.orchestration import get_client

    from deployments.crashes import database_is_sqlite

    async with get_client() as client:
        if create:
            await client.create_flow_from_name(create)
        return await database_is_sqlite(client, flow_name)


def test_the_session_server_is_told_to_be_on_sqlite_and_an_unknown_flow_tells_nothing(prefect_api):
    assert asyncio.run(_is_sqlite(create="run-pipeline")) is True
    assert asyncio.run(_is_sqlite(f"never-registered-{uuid.uuid4().hex[:8]}")) is None


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_a_server_on_postgresql_is_told_apart_and_keeps_the_automation(postgres_url, tmp_path, caplog):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from support.prefect_server import PrefectServer

    from deployments.crashes import crash_automation, set_up_crash_detection

    server = PrefectServer(tmp_path / "home", postgres_url).start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            assert asyncio.run(_is_sqlite(create="run-pipeline")) is False

            async def set_up() -> tuple[bool, int]:
                async with get_client() as client:
                    watch = await set_up_crash_detection(client, _quiet())
                    return watch, len(await client.read_automations_by_name(crash_automation()["name"]))

            assert asyncio.run(set_up()) == (False, 1)  # no watcher: the automation does it there

            async def cannot_tell() -> bool:
                async with get_client() as client:
                    return await set_up_crash_detection(client, _quiet(), flow_name="never-registered")

            with caplog.at_level(logging.INFO, logger=_quiet().name):
                assert asyncio.run(cannot_tell()) is False  # the automation, and why
            told = "database could not be told (no flow 'never-registered' to tell it by); using the crash"
            assert told in caplog.text
    finally:
        server.stop()
    server.assert_clean_log()


def _quiet() -> logging.Logger:
    return logging.getLogger("opsflow.tests.crash-watch")


async def _heartbeat(prefect_api: str, client, run_id, ahead: datetime) -> None:
    """Send run `run_id` a heartbeat 10 s before `ahead`; wait until the watcher can read it."""
    from deployments.heartbeats import _beat_since

    beat = {
        "id": str(uuid.uuid4()),
        "occurred": (ahead - timedelta(seconds=10)).isoformat(),
        "event": "prefect.flow-run.heartbeat",
        "resource": {"prefect.resource.id": f"prefect.flow-run.{run_id}"},
    }
    async with httpx.AsyncClient() as http:
        (await http.post(f"{prefect_api}/events", json=[beat])).raise_for_status()
    for _ in range(100):  # the event persister writes it within a few seconds
        if await _beat_since(client, run_id, ahead - timedelta(seconds=60)):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the heartbeat never became readable")


def test_the_watcher_marks_silent_running_runs_and_skips_fresh_beating_own_and_final_ones(prefect_api):
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed, Crashed, Running

    from deployments.heartbeats import _propose_crashed, mark_silent_runs

    flow = Flow(fn=lambda: None, name=f"crash-watch-{uuid.uuid4().hex[:8]}")
    other = Flow(fn=lambda: None, name=f"someone-elses-{uuid.uuid4().hex[:8]}")
    ahead = datetime.now(UTC) + timedelta(seconds=200)  # the check as it runs 200 s from now

    async def scenario() -> dict:
        async with get_client() as client:
            runs = {
                name: (await client.create_flow_run(flow, name=name, state=state)).id
                for name, state in [
                    ("silent", Running()),
                    ("beating", Running()),
                    ("own", Running()),
                    ("done", Completed()),
                    ("crashed-by-another", Crashed(message="marked by another watcher")),
                ]
            }
            foreign = (await client.create_flow_run(other, state=Running())).id
            await _heartbeat(prefect_api, client, runs["beating"], ahead)
            watch = {"flow_name": flow.name, "skip": {runs["own"]}}
            # events are readable up to 5 s late: silent for the window + 4 s is not yet enough
            since = (await client.read_flow_run(runs["silent"])).state.timestamp
            edge = since + timedelta(seconds=WINDOW + 4)
            result = {
                "now": await mark_silent_runs(client, WINDOW, **watch),  # all entered Running just now
                "edge": await mark_silent_runs(client, WINDOW, now=edge, **watch),
                "later": await mark_silent_runs(client, WINDOW, now=edge + timedelta(seconds=2), **watch),
                "again": await mark_silent_runs(client, WINDOW, now=ahead, **watch),
                "race": await _propose_crashed(client, runs["crashed-by-another"], "a second watcher"),
            }
            runs["foreign"] = foreign
            states = {name: (await client.read_flow_run(run_id)).state for name, run_id in runs.items()}
            return {"runs": runs, "states": states, **result}

    done = asyncio.run(scenario())
    runs, states = done["runs"], done["states"]
    assert done["now"] == [] and done["edge"] == []
    assert done["later"] == [runs["silent"]]
    assert done["again"] == []  # already Crashed: not Running any more
    assert done["race"] is False  # Prefect aborts Crashed over a final state
    assert states["silent"].is_crashed()
    assert states["silent"].message == MESSAGE
    assert states["beating"].is_running() and states["own"].is_running()
    assert states["foreign"].is_running()  # another flow's run: not opsflow's to mark
    assert states["done"].is_completed()
    assert states["crashed-by-another"].message == "marked by another watcher"


def test_pipeline_serve_watches_on_the_sqlite_session_server_and_not_when_switched_off(prefect_api):
    from deployments.serve import _crash_detection

    assert asyncio.run(_is_sqlite(create="run-pipeline")) is True
    assert asyncio.run(_crash_detection(True)) is True  # the watch, not the automation
    assert asyncio.run(_crash_detection(False)) is False  # OPSFLOW_CRASH_AUTOMATION=off: neither


def test_a_dead_run_behind_more_live_ones_than_a_check_looks_up_is_found_a_check_later(
    prefect_api, monkeypatch
):
    from prefect import Flow
    from prefect.client.orchestration import get_client
    from prefect.states import Running

    from deployments import heartbeats

    monkeypatch.setattr(heartbeats, "LOOKUPS_PER_CHECK", 1)  # one live run fills a check
    flow = Flow(fn=lambda: None, name=f"crash-watch-{uuid.uuid4().hex[:8]}")
    ahead = datetime.now(UTC) + timedelta(seconds=200)

    async def scenario() -> tuple[list, list, object]:
        async with get_client() as client:
            live = (await client.create_flow_run(flow, name="live", state=Running())).id
            dead = (await client.create_flow_run(flow, name="dead", state=Running())).id
            await _heartbeat(prefect_api, client, live, ahead)
            looked_up: dict = {}
            first = await heartbeats.mark_silent_runs(
                client, WINDOW, flow_name=flow.name, now=ahead, looked_up=looked_up
            )
            second = await heartbeats.mark_silent_runs(
                client, WINDOW, flow_name=flow.name, now=ahead + timedelta(seconds=10), looked_up=looked_up
            )
            return first, second, dead

    first, second, dead = asyncio.run(scenario())
    assert first == []  # the older, live run took the one lookup
    assert second == [dead]  # the next check looks up the run it did not look at
