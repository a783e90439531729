"""The normalised alert every format produces, and the checks that keep bad payloads out."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, overload

from nodes.errors import IngestError

__all__ = [
    "stored_moment",
    "SEVERITIES",
    "Parsed",
    "as_list",
    "as_object",
    "common_labels",
    "dedupe",
    "hash_key",
    "label_fingerprint",
    "make_alert",
    "map_severity",
    "string_map",
    "text",
    "timestamp",
    "worst_severity",
]

SEVERITIES = ("critical", "warning", "info")
SEVERITY_RANK = {"critical": 3, "warning": 2, "info": 1}

# Bounds on what one payload may carry: a sender gone wrong must not fill the store.
MAX_ALERTS = 10_000
MAX_LABELS = 256
MAX_NAME = 256
MAX_LABEL_VALUE = 4096
MAX_TEXT = 65_536
MAX_TITLE = 1024

_SEVERITY_WORDS = {
    "critical": (
        "critical crit fatal emergency emerg disaster high major page error err alert severe "
        "urgent p1 p2 sev1 sev2 sev-1 sev-2 s1 s2 1 2"
    ),
    "warning": "warning warn average medium minor moderate p3 sev3 sev-3 s3 3",
    "info": (
        "info informational information low notice debug ok none trivial success "
        "not_classified p4 p5 sev4 sev5 4 5"
    ),
}
_SEVERITY_MAP = {word: level for level, words in _SEVERITY_WORDS.items() for word in words.split()}


@dataclass
class Parsed:
    """One payload, normalised: its alerts and the key of the group they belong to.

    `ignored` is a reason when the payload carries no alert on purpose (an SNS
    subscription handshake, a PagerDuty ping); `extra` goes into the node output.
    """

    alerts: list[dict[str, Any]] = field(default_factory=list)
    group_key: str = ""
    title: str = ""
    ignored: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def map_severity(value: Any, default: str = "warning") -> str:
    """Free-text severity (`major`, `P1`, `Disaster`, `warn`) to critical|warning|info."""
    if value is None or isinstance(value, dict | list):
        return default
    word = str(value).strip().lower().replace(" ", "_")
    return _SEVERITY_MAP.get(word, default)


def worst_severity(severities) -> str:
    return max(severities, key=lambda s: SEVERITY_RANK.get(s, 0), default="info")


# never None when required or given a string
@overload
def text(
    value: Any, where: str, *, limit: int = ..., required: Literal[True], truncate: bool = ...
) -> str: ...
@overload
def text(value: str, where: str, *, limit: int = ..., required: bool = ..., truncate: bool = ...) -> str: ...
@overload
def text(
    value: Any, where: str, *, limit: int = ..., required: bool = ..., truncate: bool = ...
) -> str | None: ...
def text(
    value: Any, where: str, *, limit: int = MAX_TEXT, required: bool = False, truncate: bool = False
) -> str | None:
    """`value` as clean text: UTF-8 encodable, no NUL, bounded; numbers become strings.

    Raises IngestError naming `where` for anything else, so the store never sees text
    its database would refuse.
    """
    if value is None:
        if required:
            raise IngestError(f"{where}: is missing")
        return None
    if type(value) is not str:
        value = _coerce(value, where)
    if not value.isascii():  # ASCII is valid UTF-8; only the rest needs the (slower) check
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise IngestError(f"{where}: is not valid UTF-8 text (lone surrogate)") from None
    if "\x00" in value:
        raise IngestError(f"{where}: contains a NUL character")
    if len(value) > limit:
        if not truncate:
            raise IngestError(f"{where}: is {len(value)} characters long (limit {limit})")
        value = value[: limit - 1] + "…"
    if required and not value.strip():
        raise IngestError(f"{where}: is empty")
    return value


def _coerce(value: Any, where: str) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise IngestError(f"{where}: is not valid UTF-8 text") from None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise IngestError(f"{where}: expected a string, got {type(value).__name__}")


def as_object(value: Any, where: str, *, required: bool = True) -> dict[str, Any]:
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        got = "nothing" if value is None else type(value).__name__
        raise IngestError(f"{where}: expected an object, got {got}")
    return value


def as_list(value: Any, where: str, *, limit: int = MAX_ALERTS) -> list[Any]:
    if not isinstance(value, list):
        got = "nothing" if value is None else type(value).__name__
        raise IngestError(f"{where}: expected a list, got {got}")
    if len(value) > limit:
        raise IngestError(f"{where}: {len(value)} entries (limit {limit})")
    return value


def string_map(value: Any, where: str, *, value_limit: int = MAX_LABEL_VALUE) -> dict[str, str]:
    """Labels or annotations: a bounded object of text; null values are dropped."""
    if value is None:
        return {}
    mapping = as_object(value, where)
    if len(mapping) > MAX_LABELS:
        raise IngestError(f"{where}: {len(mapping)} entries (limit {MAX_LABELS})")
    result: dict[str, str] = {}
    for name, item in mapping.items():
        key = text(name, f"{where} key", limit=MAX_NAME, required=True)
        if item is not None:
            result[key] = text(item, f"{where}.{key}", limit=value_limit)
    return result


def timestamp(value: Any, where: str) -> str | None:
    """An ISO 8601 string or epoch (s or ms) as UTC ISO 8601.

    Go's zero time and unreadable times are None: a bad clock must not cost an alert.
    Anything that is not text or a number is still refused.
    """
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        digits = value.strip()
        if len(digits) > 20:  # past any clock, and int() refuses over 4,300 digits
            return None
        value = int(digits)
    if isinstance(value, int | float):
        try:
            seconds = value / 1000 if value > 100_000_000_000 else value
            moment = datetime.fromtimestamp(seconds, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    else:
        raw = text(value, where, limit=MAX_NAME)
        try:
            moment = datetime.fromisoformat(raw.strip())
        except ValueError:
            return None
        if moment.year <= 1:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, ValueError):
        return None


def stored_moment(value: Any) -> datetime | None:
    """A normalised alert time (`starts_at`, `ends_at`, ...) as an aware datetime, or None.

    None for a missing or unparsable value, a naive one, and Alertmanager's zero time
    (year 1), which means "unknown".
    """
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo and moment.year >= 2000 else None


def hash_key(*parts: Any) -> str:
    """A stable 16-hex digest of JSON-able parts (same length as Alertmanager's)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def label_fingerprint(labels: dict[str, str]) -> str:
    return hash_key(sorted(labels.items()))


def make_alert(
    *,
    where: str,
    fingerprint: Any,
    status: str,
    severity: str,
    title: Any,
    source: str,
    description: Any = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    starts_at: str | None = None,
    ends_at: str | None = None,
    generator_url: Any = None,
) -> dict[str, Any]:
    """The normalised alert (DESIGN: ingest); long titles and descriptions are cut, not refused."""
    return {
        "fingerprint": text(fingerprint, f"{where}.fingerprint", limit=MAX_NAME, required=True),
        "status": status,
        "severity": severity,
        "title": text(title, f"{where}.title", limit=MAX_TITLE, truncate=True) or "(untitled)",
        "description": text(description, f"{where}.description", truncate=True) or "",
        "labels": labels or {},
        "annotations": annotations or {},
        "source": source,
        "starts_at": starts_at,
        "ends_at": ends_at,
        "generator_url": text(generator_url, f"{where}.generator_url", limit=MAX_NAME * 16) or None,
    }


def common_labels(alerts: list[dict[str, Any]]) -> dict[str, str]:
    """The labels every alert shares, with the same value."""
    if not alerts:
        return {}
    common = dict(alerts[0].get("labels") or {})
    for alert in alerts[1:]:
        labels = alert.get("labels") or {}
        common = {k: v for k, v in common.items() if labels.get(k) == v}
    return common


def dedupe(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One alert per fingerprint, the last one winning, in first-seen order."""
    by_fingerprint: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        by_fingerprint[alert["fingerprint"]] = alert
    return list(by_fingerprint.values())
