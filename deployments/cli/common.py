"""What every `pipeline` command shares: its error (`Exit`), loading a definition, reading a payload."""

from __future__ import annotations

import enum
import json
import sys
from pathlib import Path
from typing import Any

from flows.definition import Pipeline, load_definition
from flows.limits import MAX_PAYLOAD_BYTES, LimitError, check_payload, read_limited
from nodes.errors import DefinitionError, OpsflowError

__all__ = [
    "DEFAULT_ALERT_PIPELINE",
    "Exit",
    "LogLevel",
    "definition_message",
    "ids",
    "load_or_exit",
    "payload_from",
    "sample_payload",
    "verbose_requested",
]

# `-v` anywhere on the command line: tracebacks for errors, Prefect's own log lines for a run
VERBOSE_FLAGS = ("-v", "--verbose")


def verbose_requested() -> bool:
    """True when `-v`/`--verbose` is anywhere on the command line (before or after the command)."""
    return any(arg in VERBOSE_FLAGS for arg in sys.argv[1:])


DEFAULT_ALERT_PIPELINE = "alert-triage"


class LogLevel(enum.StrEnum):
    """The levels `--log-level` takes (`warn` is logging's WARNING)."""

    debug = "debug"
    info = "info"
    warn = "warn"
    error = "error"


class Exit(OpsflowError):
    """A message for stderr and an exit code: how every user mistake ends."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def ids(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def load_or_exit(ref: str) -> Pipeline:
    try:
        return load_definition(ref)
    except DefinitionError as exc:
        raise Exit(definition_message(exc)) from None


def definition_message(exc: DefinitionError) -> str:
    first = exc.problems[0] if exc.problems else str(exc)
    if len(exc.problems) == 1 and first.startswith(
        ("Pipeline definition not found", "Config file not found", "Invalid JSON")
    ):
        return first
    return "Pipeline definition invalid:\n" + "\n".join(f"  - {p}" for p in exc.problems)


def payload_from(payload: str | None, file: Path | None, sample: bool) -> dict[str, Any]:
    if sum(bool(x) for x in (payload, file, sample)) > 1:
        raise Exit("Use only one of --payload, --file and --sample")
    if payload:
        try:
            check_payload(payload, "--payload")
            data = json.loads(payload)
        except LimitError as exc:
            raise Exit(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise Exit(f"Invalid JSON in --payload: {exc.msg} at column {exc.colno}") from None
    elif file:
        try:
            text = read_limited(file, MAX_PAYLOAD_BYTES, "Payload file")
            check_payload(text, f"Payload file {file}")
            data = json.loads(text)
        except LimitError as exc:
            raise Exit(str(exc)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Exit(f"Invalid JSON in payload file {file}: {exc}") from None
    elif sample:
        data = sample_payload()
    else:
        data = {}
    if not isinstance(data, dict):
        raise Exit("The payload must be a JSON object")
    from nodes.scrub import scrub_alert_payload  # the payload is stored as the run's parameters

    return scrub_alert_payload(data)[0]


def sample_payload() -> dict[str, Any]:
    """A realistic Alertmanager webhook: what `--sample` sends."""
    from nodes.ingest.samples import SAMPLE_PAYLOAD

    return json.loads(json.dumps(SAMPLE_PAYLOAD))
