"""Runs whose process died end Crashed: the Prefect automation that watches flow-run heartbeats.

A killed worker (or `pipeline serve`) cannot report its runs; without this they stay
Running forever and nobody is told. Every flow run sends a heartbeat event every 30 s
(flows.settings); the automation in deployments/crashed-runs.json marks a run Crashed
when they stop. It needs the server's trigger services (on in `prefect server start`).

On a SQLite-backed server those services can hold the database for up to a minute while
they evaluate it (measured with bench/latency.py: one alert of 30 took 61 s to be accepted
with the automation, none over 1.2 s without), so `OPSFLOW_CRASH_AUTOMATION=off` leaves it
out; the embedded server needs none (it ends with the process that would have crashed).
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
    "ensure_crash_automation",
    "remove_crash_automation",
]

AUTOMATION_FILE = Path(__file__).resolve().parent / "crashed-runs.json"
# seconds without a heartbeat before a run counts as dead: at least 2 heartbeats and a check
WITHIN_ENV = "OPSFLOW_CRASH_AFTER_SECONDS"
MIN_WITHIN_SECONDS = 35
SWITCH_ENV = "OPSFLOW_CRASH_AUTOMATION"


def crash_automation_wanted(*, embedded: bool) -> bool:
    """Whether `pipeline serve` sets up the automation: not on the embedded server, nor when
    $OPSFLOW_CRASH_AUTOMATION is `off`; any other value but `on` is a usage error."""
    from nodes.errors import UsageError

    switch = (os.environ.get(SWITCH_ENV) or "on").strip().lower()
    if switch not in ("on", "off"):
        raise UsageError(f"{SWITCH_ENV} must be on or off, not {switch!r}")
    return switch == "on" and not embedded


def crash_automation(within: int | None = None) -> dict[str, Any]:
    """The automation as JSON, its window from `within`, else $OPSFLOW_CRASH_AFTER_SECONDS, else 90 s."""
    spec = json.loads(AUTOMATION_FILE.read_text())
    configured = within or int(os.environ.get(WITHIN_ENV) or spec["trigger"]["within"])
    window = max(MIN_WITHIN_SECONDS, configured)
    spec["trigger"]["within"] = window
    for action in spec["actions"]:
        action["message"] = action["message"].replace("90 s", f"{window} s")
    return spec


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
