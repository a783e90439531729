"""The `alertmanager` context source: what else fires for the alert's target, and what is silenced.

With ALERTMANAGER_URL set, the context node asks that Alertmanager (API v2, and only it)
for the other active alerts of the same instance, service or job, and the silences that
match the alert: "one alert" becomes "three things wrong on db-7".
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from nodes.prometheus import read_capped

__all__ = ["MAX_BYTES", "around", "matches"]

MAX_BYTES = 1_048_576
MAX_LISTED = 20
_KEYS = ("instance", "service", "job")


def around(incident: dict[str, Any], url: str, *, headers=None, auth=None, timeout: float = 5.0) -> dict:
    """`{"url", "key", "others": [...], "silences": [...], "queries": [...]}` for the incident."""
    import httpx

    base = url.rstrip("/")
    parts = urlsplit(base)
    alerts = incident.get("alerts") or []
    mine = {a.get("fingerprint") for a in alerts}
    labels = (alerts[0].get("labels") if alerts else None) or {}
    key = next(((k, labels[k]) for k in _KEYS if labels.get(k)), None)
    record: dict[str, Any] = {"url": f"{parts.scheme}://{parts.netloc}", "queries": []}
    if key is None:
        record["skipped_reason"] = "the alert has no instance, service or job label"
        return record
    record["key"] = f"{key[0]}={key[1]}"
    with httpx.Client(timeout=timeout, headers=headers or {}, auth=auth, follow_redirects=False) as client:
        active = _get(
            client,
            record,
            f"{base}/api/v2/alerts",
            {"active": "true", "silenced": "true", "inhibited": "true", "filter": f'{key[0]}="{key[1]}"'},
        )
        silences = _get(client, record, f"{base}/api/v2/silences", {})
    mine_labels = [a.get("labels") or {} for a in alerts]
    others = [
        a
        for a in active or []
        if isinstance(a, dict)
        and a.get("fingerprint") not in mine
        and (a.get("labels") or {}) not in mine_labels
    ]
    record["others"] = [
        {
            "alertname": (a.get("labels") or {}).get("alertname"),
            "severity": (a.get("labels") or {}).get("severity"),
            "state": (a.get("status") or {}).get("state"),
            "starts_at": a.get("startsAt"),
            "summary": (a.get("annotations") or {}).get("summary"),
        }
        for a in others[:MAX_LISTED]
    ]
    record["others_total"] = len(others)
    record["silences"] = [
        {
            "id": s.get("id"),
            "comment": s.get("comment"),
            "created_by": s.get("createdBy"),
            "ends_at": s.get("endsAt"),
            "matchers": s.get("matchers"),
        }
        for s in silences or []
        if isinstance(s, dict)
        and (s.get("status") or {}).get("state") == "active"
        and any(matches(s.get("matchers") or [], a.get("labels") or {}) for a in alerts)
    ][:MAX_LISTED]
    return record


def _get(client, record: dict[str, Any], url: str, params: dict[str, str]) -> list | None:
    import json

    import httpx

    entry: dict[str, Any] = {"path": urlsplit(url).path, "params": params}
    began = time.perf_counter()
    try:
        with client.stream("GET", url, params=params) as response:
            body = read_capped(response, MAX_BYTES)
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
        data = json.loads(body)
        entry["status"] = "ok"
        return data if isinstance(data, list) else None
    except (httpx.HTTPError, ValueError) as exc:
        entry.update(status="error", error=f"{type(exc).__name__}: {exc}"[:300])
        return None
    finally:
        entry["duration_ms"] = round((time.perf_counter() - began) * 1000, 1)
        record["queries"].append(entry)


def matches(matchers: list[dict[str, Any]], labels: dict[str, str]) -> bool:
    """Alertmanager's matcher semantics: all must hold (`=`, `!=`, `=~`, `!~`, anchored regexes)."""
    import re

    if not matchers:
        return False
    for m in matchers:
        value = labels.get(str(m.get("name")), "")
        wanted = str(m.get("value", ""))
        if m.get("isRegex"):
            try:
                hit = re.fullmatch(wanted, value) is not None
            except re.error:
                return False
        else:
            hit = value == wanted
        if hit != m.get("isEqual", True):
            return False
    return True
