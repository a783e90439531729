"""Secret shapes scrubbed from alert payloads before they are stored: flow-run parameters, the
incident store, events. An annotation may carry a pasted token or a DSN with its password.

The same shapes as the LLM prompt's (`nodes.intelligence.redact`), run on each string on
its own, plus the value of a key named as a credential (`"password": "..."`). Nothing
else changes: ordinary text, numbers, labels and URLs without credentials are kept as sent.
"""

from __future__ import annotations

import re
from typing import Any

from nodes.base import REDACTED
from nodes.intelligence.redact import redact_text

__all__ = ["SECRET_KEY", "scrub_alert", "scrub_alert_payload", "scrub_payload"]

# a JSON key whose value is a credential whatever it looks like (exact names: `dedup_key`,
# `incident_key`, `fingerprint` are identities, not secrets)
SECRET_KEY = re.compile(
    r"(?:password|passwd|pwd|passphrase|secret|client[_-]?secret|api[_-]?key|x-api-key|"
    r"access[_-]?key|secret[_-]?key|private[_-]?key|signing[_-]?secret|auth[_-]?token|"
    r"access[_-]?token|refresh[_-]?token|token|authorization|routing[_-]?key|integration[_-]?key)",
    re.IGNORECASE,
)


def scrub_payload(value: Any, *, keep: tuple[str, ...] = ()) -> tuple[Any, int]:
    """`value` (a JSON value) with secret-shaped strings replaced by `***`; and how many.

    Top-level keys in `keep` are left as they are (the raw body a signature is checked
    against). Keys are never changed; a value is only replaced, never removed, so the
    payload keeps its shape and every format still parses it.
    """
    count = 0

    def walk(item: Any) -> Any:
        nonlocal count
        if isinstance(item, str):
            if not item:
                return item
            scrubbed, n = redact_text(item)
            count += n
            return scrubbed
        if isinstance(item, dict):
            return {key: secret(key, child) for key, child in item.items()}
        if isinstance(item, list):
            return [walk(child) for child in item]
        return item

    def secret(key: Any, child: Any) -> Any:
        nonlocal count
        if isinstance(key, str) and SECRET_KEY.fullmatch(key) and isinstance(child, str | int | float):
            if isinstance(child, bool) or child in ("", REDACTED):
                return child
            count += 1
            return REDACTED
        return walk(child)

    if isinstance(value, dict) and keep:
        return {k: v if k in keep else secret(k, v) for k, v in value.items()}, count
    return walk(value), count


# an SNS handshake exists to deliver its confirmation token: scrubbed, it could not be confirmed
_SNS_HANDSHAKES = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
_SNS_KEPT = ("Token", "SubscribeURL", "UnsubscribeURL")


def scrub_alert_payload(payload: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """An alert payload as it may be stored (a run's parameters, the journal); and how many
    values were scrubbed. Kept as sent: an SNS handshake's token and confirmation URLs.
    (The receiver's raw request, which a PagerDuty signature is checked against, is the
    run's `http` parameter, not part of the payload.)"""
    keep: tuple[str, ...] = ()
    if payload.get("Type") in _SNS_HANDSHAKES and "TopicArn" in payload:
        keep += _SNS_KEPT
    return scrub_payload(payload, keep=keep)


# the text of a normalised alert (its identity fields, fingerprint and status, are left alone)
_ALERT_TEXT = ("title", "description", "labels", "annotations", "generator_url")


def scrub_alert(alert: dict[str, Any]) -> dict[str, Any]:
    """A normalised alert with its text scrubbed: what the incident store keeps, however the
    payload came (the receiver scrubs payloads already; a signed PagerDuty body it keeps as sent)."""
    texts = {k: alert[k] for k in _ALERT_TEXT if alert.get(k)}
    return {**alert, **scrub_payload(texts)[0]} if texts else alert
