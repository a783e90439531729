"""Journal delivery ids that tell their own age, and the journal's retention setting."""

from __future__ import annotations

import os
import secrets
import time
import uuid

__all__ = ["DEFAULT_RETENTION_DAYS", "RETENTION_ENV", "id_time", "new_id", "retention_days"]

RETENTION_ENV = "OPSFLOW_JOURNAL_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 7.0


def new_id() -> str:
    """A UUID version 7: its first 48 bits are the milliseconds since the epoch (RFC 9562)."""
    value = (int(time.time() * 1000) & (2**48 - 1)) << 80 | secrets.randbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))


def id_time(entry_id: str) -> float | None:
    """When a delivery id made by new_id was made; None for any other string."""
    try:
        parsed = uuid.UUID(entry_id)
    except ValueError:
        return None
    if parsed.version != 7:
        return None
    return (parsed.int >> 80) / 1000


def retention_days() -> float:
    """$OPSFLOW_JOURNAL_RETENTION_DAYS (default 7); anything but a positive number is refused."""
    raw = os.environ.get(RETENTION_ENV, "").strip()
    if not raw:
        return DEFAULT_RETENTION_DAYS
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not days > 0:
        from nodes.errors import OpsflowError

        raise OpsflowError(f"${RETENTION_ENV}: expected a positive number of days, got {raw[:32]!r}")
    return days
