"""Runs whose process died end Crashed: Prefect's heartbeat automation, or on SQLite `pipeline serve`.

A killed worker (or `pipeline serve`) cannot report its runs; without this they stay
Running forever and nobody is told. Every flow run sends a heartbeat event every 30 s
(flows.settings); when they stop, the run is marked Crashed, in one of two ways:

- on PostgreSQL, the automation in deployments/crashed-runs.json, evaluated by the
  server's trigger services (on in `prefect server start`); it covers workers even when
  no `pipeline serve` runs.
- on SQLite, those services were seen holding the database for up to a minute while they
  evaluate it ("database is locked" in the server's log), so `pipeline serve` removes it
  and watches the heartbeats itself (deployments.heartbeats), with reads only. (Prefect's
  other services stall SQLite too, without it: README, "Runs whose worker dies".)

Prefect's API masks the database URL (`GET /admin/settings` answers "**********"), so the
database is told by how it matches names: PostgreSQL's LIKE takes a backslash as its
escape character, SQLite's has none. `OPSFLOW_CRASH_AUTOMATION=off` leaves both out; the
embedded server needs neither (it ends with the process that would have crashed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = [
    "AUTOMATION_FILE",
    "SWITCH_ENV",
    "WITHIN_ENV",
    "crash_automation",
    "crash_automation_wanted",
    "crash_message",
    "crash_window",
    "database_is_sqlite",
    "ensure_crash_automation",
    "remove_crash_automation",
    "set_up_crash_detection",
]

AUTOMATION_FILE = Path(__file__).resolve().parent / "crashed-runs.json"
# seconds without a heartbeat before a run counts as dead: at least 2 heartbeats and a check
WITHIN_ENV = "OPSFLOW_CRASH_AFTER_SECONDS"
MIN_WITHIN_SECONDS = 35
DEFAULT_WITHIN_SECONDS = 90
SWITCH_ENV = "OPSFLOW_CRASH_AUTOMATION"


def crash_automation_wanted(*, embedded: bool) -> bool:
    """Whether `pipeline serve` sets up the automation: not on the embedded server, nor when
    $OPSFLOW_CRASH_AUTOMATION is `off`; any other value but `on` is a usage error."""
    from nodes.errors import UsageError

    switch = (os.environ.get(SWITCH_ENV) or "on").strip().lower()
    if switch not in ("on", "off"):
        raise UsageError(f"{SWITCH_ENV} must be on or off, not {switch!r}")
    return switch == "on" and not embedded


def crash_window(within: int | None = None) -> int:
    """Seconds of silence before a run counts as dead: `within`, else $OPSFLOW_CRASH_AFTER_SECONDS,
    else 90; never under 35."""
    from nodes.errors import UsageError

    configured = within or os.environ.get(WITHIN_ENV) or DEFAULT_WITHIN_SECONDS
    try:
        return max(MIN_WITHIN_SECONDS, int(configured))
    except ValueError:
        raise UsageError(f"{WITHIN_ENV} must be a whole number of seconds, not {configured!r}") from None


def crash_automation(within: int | None = None) -> dict[str, Any]:
    """The automation as JSON, its window from crash_window(within)."""
    spec = json.loads(AUTOMATION_FILE.read_text())
    window = crash_window(within)
    spec["trigger"]["within"] = window
    for action in spec["actions"]:
        action["message"] = action["message"].replace("90 s", f"{window} s")
    return spec


def crash_message(within: int | None = None) -> str:
    """What a run marked Crashed says, by the automation or by the watcher alike."""
    return crash_automation(within)["actions"][0]["message"]


async def ensure_crash_automation(client, within: int | None = None) -> str:
    """Create the automation, or bring the existing one (same name) up to date; returns what was done."""
    from prefect.events.actions import ChangeFlowRunState  # noqa: F401 - registers the action type
    from prefect.events.schemas.automations import AutomationCore

    automation = AutomationCore.model_validate(crash_automation(within))
    existing = await client.read_automations_by_name(automation.name)
    if not existing:
        await client.create_automation(automation)
        return "created"
    current = existing[0]
    if current.trigger == automation.trigger and current.enabled and current.actions == automation.actions:
        return "present"
    await client.update_automation(current.id, automation)
    return "updated"


async def remove_crash_automation(client) -> int:
    """Delete the automation an earlier `pipeline serve` made (switched off now); how many went."""
    name = json.loads(AUTOMATION_FILE.read_text())["name"]
    existing = await client.read_automations_by_name(name)
    for automation in existing:
        await client.delete_automation(automation.id)
    return len(existing)


async def database_is_sqlite(client, flow_name: str | None = None) -> bool | None:
    """Whether the server keeps its data in SQLite; None when it cannot be told.

    Reads only: the flow `flow_name` (run-pipeline, registered by then) is looked up by a
    LIKE pattern with an escaped `-`. PostgreSQL reads the backslash as an escape and finds
    it; SQLite, whose LIKE has no escape character, looks for a backslash and does not.
    """
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    from flows.request import FLOW_NAME

    name = flow_name or FLOW_NAME

    async def found(pattern: str) -> bool:
        flows = await client.read_flows(flow_filter=FlowFilter(name=FlowFilterName(like_=pattern)), limit=5)
        return any(flow.name == name for flow in flows)

    if not await found(name):
        return None  # nothing to tell it by
    return not await found(name.replace("-", "\\-"))


async def set_up_crash_detection(client, log, flow_name: str | None = None) -> bool:
    """The automation on PostgreSQL (or when the database cannot be told); True when this
    process must watch heartbeats instead (SQLite), after removing an automation made before."""
    try:
        sqlite = await database_is_sqlite(client, flow_name)
        why = f"no flow {flow_name or 'run-pipeline'!r} to tell it by"
    except Exception as exc:  # noqa: BLE001 - the automation is the safe default
        sqlite, why = None, f"reading flows failed: {exc}"
    if sqlite is None:
        log.warning("the Prefect server's database could not be told (%s); using the crash automation", why)
    if sqlite:
        if await remove_crash_automation(client):
            log.info("crash automation removed: on SQLite its evaluation stalls the server")
        log.info("crash detection: this process watches flow-run heartbeats (SQLite)")
        return True
    log.info("crash detection automation %s", await ensure_crash_automation(client))
    return False
