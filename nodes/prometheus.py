"""The `prometheus` context source: the alert's own expression over a lookback window.

Queries go only to the configured PROMETHEUS_URL; an alert supplies the expression (from
its `generatorURL` `g0.expr`), never the host. Each query is bounded in time, in points and
in bytes, and recorded (expression, window, timing, outcome) in the node output.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from nodes.ingest.alert import stored_moment
from nodes.intelligence.alerts import alert_expr

__all__ = ["MAX_BYTES", "query_alerts", "read_capped", "signals", "summarise"]

MAX_BYTES = 1_048_576  # of one query_range answer
MAX_ALERTS = 5  # alerts of a group queried per run


def query_alerts(
    incident: dict[str, Any],
    url: str,
    *,
    headers: dict[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    lookback_minutes: int = 30,
    timeout: float = 5.0,
    max_points: int = 120,
    max_series: int = 10,
    now: datetime | None = None,
) -> dict[str, Any]:
    """`{"url": host, "queries": [...]}`: one query_range per firing alert with an expression."""
    import httpx

    now = now or datetime.now(UTC)
    base = url.rstrip("/")
    parts = urlsplit(base)
    record: dict[str, Any] = {"url": f"{parts.scheme}://{parts.netloc}", "queries": []}
    firing = [a for a in incident.get("alerts") or [] if a.get("status", "firing") == "firing"]
    seen: set[str] = set()
    with httpx.Client(timeout=timeout, headers=headers or {}, auth=auth, follow_redirects=False) as client:
        for alert in firing:
            expr = alert_expr(alert)
            if not expr or expr in seen or len(record["queries"]) >= MAX_ALERTS:
                continue
            seen.add(expr)
            started = stored_moment(alert.get("starts_at")) or now
            start = min(started, now) - timedelta(minutes=lookback_minutes)
            start = max(start, now - timedelta(hours=6))  # an old alert: the last six hours at most
            step = max(15.0, math.ceil((now - start).total_seconds() / max_points))
            # whole steps back from now, so the last point is now itself
            start = now - timedelta(seconds=step * math.ceil((now - start).total_seconds() / step))
            query = {
                "alert": alert.get("title"),
                "fingerprint": alert.get("fingerprint"),
                "expr": expr,
                "start": start.isoformat(),
                "end": now.isoformat(),
                "step_seconds": step,
            }
            began = time.perf_counter()
            try:
                data = _get(client, f"{base}/api/v1/query_range", expr, start, now, step)
                series = data.get("result") or []
                query["series_total"] = len(series)
                query["series"] = [summarise(s, started) for s in series[:max_series]]
                query["status"] = "ok"
            except _QueryError as exc:
                query.update(status="error", error=str(exc))
            query["duration_ms"] = round((time.perf_counter() - began) * 1000, 1)
            record["queries"].append(query)
        targets = [
            a for a in firing if (a.get("labels") or {}).get("instance") or (a.get("labels") or {}).get("pod")
        ]
        if targets:
            record["signals"] = _signals(client, base, targets[0], now, lookback_minutes, max_points)
    return record


def signals(labels: dict[str, str]) -> list[tuple[str, str]]:
    """(name, PromQL) of the standard signals for the alert's instance, mountpoint and pod."""
    out = []
    if instance := labels.get("instance"):
        sel = f'instance="{_quote(instance)}"'
        out += [
            ("up", f"up{{{sel}}}"),
            ("cpu busy", f'1 - avg(rate(node_cpu_seconds_total{{{sel},mode="idle"}}[5m]))'),
            (
                "memory used",
                f"1 - node_memory_MemAvailable_bytes{{{sel}}} / node_memory_MemTotal_bytes{{{sel}}}",
            ),
            ("load1", f"node_load1{{{sel}}}"),
        ]
        if mount := labels.get("mountpoint"):
            disk = f'{sel},mountpoint="{_quote(mount)}"'
            out.append(
                (
                    f"disk used {mount}",
                    f"1 - node_filesystem_avail_bytes{{{disk}}} / node_filesystem_size_bytes{{{disk}}}",
                )
            )
    if labels.get("pod"):
        sel = f'pod="{_quote(labels["pod"])}"' + (
            f',namespace="{_quote(labels["namespace"])}"' if labels.get("namespace") else ""
        )
        out.append(("restarts 15m", f"sum(increase(kube_pod_container_status_restarts_total{{{sel}}}[15m]))"))
    return out


def _quote(value: str) -> str:
    """A label value inside a PromQL double-quoted string."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _signals(client, base: str, alert: dict[str, Any], now: datetime, lookback: int, max_points: int) -> list:
    """The target's standard signals over the same window; a signal with no series is left out."""
    start = now - timedelta(minutes=lookback)
    step = max(15.0, math.ceil(lookback * 60 / max_points))
    start = now - timedelta(seconds=step * math.ceil(lookback * 60 / step))
    found = []
    for name, expr in signals(alert.get("labels") or {}):
        began = time.perf_counter()
        entry: dict[str, Any] = {"name": name, "expr": expr}
        try:
            result = _get(client, f"{base}/api/v1/query_range", expr, start, now, step).get("result") or []
            if not result:
                continue
            entry.update(status="ok", series=[summarise(s, now) for s in result[:3]])
        except _QueryError as exc:
            entry.update(status="error", error=str(exc))
        entry["duration_ms"] = round((time.perf_counter() - began) * 1000, 1)
        found.append(entry)
    return found


class _QueryError(Exception):
    pass


def read_capped(response, limit: int, error: type[Exception] = ValueError) -> bytes:
    """A streamed answer's body, refused (`error`) once it passes `limit` bytes, before more is read."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise error(f"answer over {limit} bytes; not read")
    return body


def _get(client, url: str, expr: str, start: datetime, end: datetime, step: float) -> dict[str, Any]:
    import json

    import httpx

    params = {"query": expr, "start": start.timestamp(), "end": end.timestamp(), "step": step}
    try:
        with client.stream("GET", url, params=params) as response:
            body = read_capped(response, MAX_BYTES, _QueryError)
    except httpx.TimeoutException as exc:
        raise _QueryError(f"timed out: {type(exc).__name__}") from exc
    except httpx.HTTPError as exc:
        raise _QueryError(f"{type(exc).__name__}: {exc}") from exc
    try:
        answer = json.loads(body)
    except ValueError as exc:
        raise _QueryError(f"HTTP {response.status_code}: answer is not JSON") from exc
    if response.status_code != 200 or answer.get("status") != "success":
        raise _QueryError(f"HTTP {response.status_code}: {answer.get('errorType')}: {answer.get('error')}")
    return answer.get("data") or {}


def summarise(series: dict[str, Any], started: datetime) -> dict[str, Any]:
    """One series as facts: value at firing, now, min, max, and the trend over the window."""
    points = []
    for stamp, value in series.get("values") or []:
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            points.append((float(stamp), number))
    out: dict[str, Any] = {"labels": series.get("metric") or {}, "points": len(points)}
    if not points:
        return out
    values = [v for _, v in points]
    at = started.timestamp()
    firing = min(points, key=lambda p: abs(p[0] - at))[1]
    first, last = values[0], values[-1]
    spread = (max(values) - min(values)) or abs(last) or 1.0
    change = (last - first) / spread
    trend = "rising" if change > 0.1 else "falling" if change < -0.1 else "flat"
    out.update(
        at_firing=_round(firing),
        now=_round(last),
        min=_round(min(values)),
        max=_round(max(values)),
        trend=trend,
    )
    return out


def _round(value: float) -> float | int:
    return int(value) if value.is_integer() else round(value, 4)
