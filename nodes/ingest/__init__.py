"""Alert formats and the incident store. `FORMATS` maps a format name to its module.

A format module holds a pydantic `Config`, `SHAPE`, `detect(payload) -> bool` and
`parse(payload, config=None) -> Parsed`, which turns one webhook payload into normalised
alerts (see `nodes.ingest.alert`) or raises `IngestError`: `nodes.protocols.Format` says
each in full. The order of `FORMATS` is the order `auto` tries them in.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any, cast

from nodes import unknown_name
from nodes.errors import DefinitionError, IngestError

if TYPE_CHECKING:
    from nodes.protocols import Format

__all__ = ["FORMATS", "HTTP_KEY", "detect_format", "get_format"]

FORMATS: dict[str, str] = {
    "grafana": "nodes.ingest.grafana",
    "alertmanager": "nodes.ingest.alertmanager",
    "pagerduty": "nodes.ingest.pagerduty",
    "cloudwatch": "nodes.ingest.cloudwatch",
    "zabbix": "nodes.ingest.zabbix",
    "datadog": "nodes.ingest.datadog",
    "generic": "nodes.ingest.generic",
}

# Where a receiver may put the raw request (`{"headers": {...}, "raw_body": "..."}`)
# so that signed formats can be verified; no format reads it as alert data.
HTTP_KEY = "_opsflow_http"


def get_format(name: str) -> Format:
    """The format module called `name`; an unknown name lists the known ones."""
    try:
        return cast("Format", import_module(FORMATS[name]))
    except (KeyError, TypeError):
        raise DefinitionError(unknown_name("ingest format", name, FORMATS)) from None


def detect_format(payload: Any) -> str:
    """The name of the first format whose shape `payload` has; IngestError says what was expected."""
    if not isinstance(payload, dict):
        raise IngestError(f"payload: expected a JSON object, got {type(payload).__name__}")
    for name in FORMATS:
        if get_format(name).detect(payload):
            return name
    keys = ", ".join(sorted(_shown(k) for k in payload)[:20]) or "none"
    expected = "; ".join(f"{name}: {get_format(name).SHAPE}" for name in FORMATS)
    raise IngestError(f"cannot detect the alert format (payload keys: {keys}); expected one of: {expected}")


def _shown(key: Any) -> str:
    """A payload key fit for a message: short, and escaped unless printable (no NUL, no lone surrogate)."""
    text = str(key)
    if len(text) > 40:
        text = text[:40] + "…"
    return text if text.isprintable() else repr(text)[1:-1]
