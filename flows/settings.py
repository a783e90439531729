"""Prefect settings opsflow needs by default, applied before Prefect is imported.

Only defaults: a value the user set in the environment always wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    # opsflow runs offline; the telemetry heartbeat only fails and logs noise
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # a fresh PREFECT_HOME runs every database migration on the first start (~30 s here)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # write each task-run event at once, so history is complete when a run ends
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1",
}


def apply_prefect_defaults(quiet_console: bool = False) -> None:
    """Set opsflow's Prefect defaults; `quiet_console` keeps Prefect's INFO lines off the terminal."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if quiet_console:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
