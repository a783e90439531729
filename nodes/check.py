"""`check` node: threshold rules over earlier outputs, and HTTP/TCP health checks.

Each check ends ok / warning / critical (or unknown when its metric is missing) with
the value seen; the node's `status` is the worst of them, for a `condition` to branch on.
"""

from __future__ import annotations

import operator
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nodes.base import NodeContext
from nodes.jmes import compile_expression, search

Status = Literal["ok", "unknown", "warning", "critical"]
RANK = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3}
_OPERATORS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}
_ROOTS = ("payload", "params", "nodes", "incident", "run")


class Threshold(BaseModel):
    """A metric compared with warning/critical levels."""

    model_config = ConfigDict(extra="forbid")

    metric: str = Field(
        description="JMESPath over the run (`nodes.metrics.memory.percent`) or, shorter, over "
        "earlier node outputs (`memory.percent`)."
    )
    name: str | None = Field(default=None, description="Name shown in results (default: metric).")
    warning: float | None = Field(default=None, description="Level at which the check warns.")
    critical: float | None = Field(default=None, description="Level at which the check is critical.")
    operator: Literal[">=", ">", "<=", "<"] = Field(
        default=">=", description="How the value is compared with the levels (`<=` for free space)."
    )

    @field_validator("metric")
    @classmethod
    def _compiles(cls, value: str) -> str:
        compile_expression(value)
        return value


class HttpCheck(BaseModel):
    """An HTTP endpoint expected to answer with a given status, within a latency."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(description="URL to request.")
    name: str | None = Field(default=None, description="Name shown in results (default: url).")
    method: str = Field(default="GET", description="HTTP method.")
    expect_status: int | list[int] = Field(default=200, description="Status code(s) that count as up.")
    timeout: float = Field(default=5.0, gt=0, le=120, description="Seconds before the check fails.")
    warning_ms: float | None = Field(default=None, description="Latency (ms) at which it warns.")
    critical_ms: float | None = Field(default=None, description="Latency (ms) that is critical.")


class TcpCheck(BaseModel):
    """A TCP port expected to accept a connection."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(description="Host name or address.")
    port: int = Field(ge=1, le=65535, description="Port.")
    name: str | None = Field(default=None, description="Name shown in results (default host:port).")
    timeout: float = Field(default=3.0, gt=0, le=60, description="Seconds before the check fails.")


class Config(BaseModel):
    """The checks to run."""

    model_config = ConfigDict(extra="forbid")

    checks: list[Threshold] = Field(default_factory=list, description="Threshold checks.")
    http: list[HttpCheck] = Field(default_factory=list, description="HTTP health checks.")
    tcp: list[TcpCheck] = Field(default_factory=list, description="TCP port checks.")


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    data = ctx.data()
    results = [_threshold(check, data, ctx) for check in config.checks]
    probes = [*config.http, *config.tcp]
    if probes:
        with ThreadPoolExecutor(max_workers=min(16, len(probes))) as pool:
            results += list(pool.map(_probe, probes))
    counts = {level: 0 for level in RANK}
    for result in results:
        counts[result["status"]] += 1
    worst = max((r["status"] for r in results), key=RANK.__getitem__, default="ok")
    return {
        "status": worst,
        "checks": results,
        "counts": counts,
        "failed": [r["name"] for r in results if r["status"] != "ok"],
    }


def level(value: float, warning: float | None, critical: float | None, op: str = ">=") -> str:
    """ok / warning / critical for `value` against the levels."""
    compare = _OPERATORS[op]
    if critical is not None and compare(value, critical):
        return "critical"
    if warning is not None and compare(value, warning):
        return "warning"
    return "ok"


def _threshold(check: Threshold, data: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    name = check.name or check.metric
    value = _metric(check.metric, data, ctx)
    base = {
        "name": name,
        "type": "threshold",
        "metric": check.metric,
        "warning": check.warning,
        "critical": check.critical,
        "operator": check.operator,
    }
    if isinstance(value, bool) or not isinstance(value, int | float):
        seen = "missing" if value is None else f"not a number ({type(value).__name__})"
        return {**base, "value": value, "status": "unknown", "message": f"{name}: metric {seen}"}
    status = level(value, check.warning, check.critical, check.operator)
    limit = {"critical": check.critical, "warning": check.warning}.get(status)
    message = f"{name} = {value:g}" + (f" ({check.operator} {limit:g})" if limit is not None else "")
    return {**base, "value": value, "status": status, "message": message}


def _metric(expression: str, data: dict[str, Any], ctx: NodeContext) -> Any:
    """The metric over the run, or over the latest earlier output that has it."""
    try:
        value = search(expression, data)
        if value is not None or expression.split(".", 1)[0].split("[", 1)[0] in _ROOTS:
            return value
        for output in reversed(list(ctx.nodes.values())):
            value = search(expression, output)
            if value is not None:
                return value
    except ValueError:
        return None
    return None


def _probe(check: HttpCheck | TcpCheck) -> dict[str, Any]:
    return _http(check) if isinstance(check, HttpCheck) else _tcp(check)


def _http(check: HttpCheck) -> dict[str, Any]:
    import httpx

    name = check.name or check.url
    expected = [check.expect_status] if isinstance(check.expect_status, int) else check.expect_status
    base: dict[str, Any] = {"name": name, "type": "http", "url": check.url, "expect_status": expected}
    started = time.perf_counter()
    try:
        with httpx.Client(timeout=check.timeout, follow_redirects=False) as client:
            response = client.request(check.method, check.url)
    except httpx.TimeoutException:
        return {
            **base,
            "status": "critical",
            "value": None,
            "message": f"{name}: timed out after {check.timeout:g} s",
        }
    except httpx.HTTPError as exc:
        return {
            **base,
            "status": "critical",
            "value": None,
            "message": f"{name}: {type(exc).__name__}: {exc}",
        }
    latency = round((time.perf_counter() - started) * 1000, 1)
    base.update(http_status=response.status_code, latency_ms=latency, value=latency)
    if response.status_code not in expected:
        return {
            **base,
            "status": "critical",
            "message": f"{name}: HTTP {response.status_code}, expected {expected}",
        }
    status = level(latency, check.warning_ms, check.critical_ms)
    return {
        **base,
        "status": status,
        "message": f"{name}: HTTP {response.status_code} in {latency:g} ms",
    }


def _tcp(check: TcpCheck) -> dict[str, Any]:
    name = check.name or f"{check.host}:{check.port}"
    base = {"name": name, "type": "tcp", "host": check.host, "port": check.port}
    started = time.perf_counter()
    try:
        with socket.create_connection((check.host, check.port), timeout=check.timeout):
            pass
    except OSError as exc:
        return {
            **base,
            "status": "critical",
            "value": None,
            "message": f"{name}: {exc.strerror or exc}",
        }
    latency = round((time.perf_counter() - started) * 1000, 1)
    return {
        **base,
        "status": "ok",
        "value": latency,
        "latency_ms": latency,
        "message": f"{name}: open in {latency:g} ms",
    }
