"""`context` node: a snapshot of the host (cpu, memory, disk, load, processes, network) via psutil.

psutil sees only the machine opsflow runs on (the orchestrator host). For an alert about
another target it says nothing about that target, so by default it is not collected then.
"""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from nodes.base import NodeContext
from nodes.errors import ConfigError

Metric = Literal["cpu", "memory", "disk", "processes", "network", "load"]


class Config(BaseModel):
    """What to collect."""

    model_config = ConfigDict(extra="forbid")

    include: list[Metric] = Field(default=["cpu", "memory", "disk"], description="Metric groups to collect.")
    disk_path: str = Field(default="/", description="Mount point (or any path on it) for `disk`.")
    top_processes: int = Field(
        default=5, ge=0, le=100, description="How many processes to list, by memory, in `processes`."
    )
    per_cpu: bool = Field(default=False, description="Also report each CPU's percentage.")
    other_targets: Literal["skip", "collect"] = Field(
        default="skip",
        description=(
            "For alerts about other hosts: `skip` collects nothing (psutil would "
            "describe the opsflow host, not the target); `collect` collects it labelled as that host."
        ),
    )
    cpu_interval: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description="Seconds to sample CPU usage over (0 compares with the previous call).",
    )
    prometheus_url: str | None = Field(
        default=None,
        description=(
            "Prometheus base URL for the alert's own expression (`prometheus` source); default: "
            "PROMETHEUS_URL. Only this server is queried; nothing is queried when neither is set."
        ),
    )
    prometheus_token: SecretStr | None = Field(default=None, description="Bearer token for Prometheus.")
    prometheus_username: str | None = Field(default=None, description="Basic auth user for Prometheus.")
    prometheus_password: SecretStr | None = Field(default=None, description="Basic auth password.")
    lookback_minutes: int = Field(
        default=30, ge=1, le=360, description="Minutes of the expression's history before the alert fired."
    )
    prometheus_timeout_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Per-query timeout for Prometheus, in seconds."
    )
    alertmanager_url: str | None = Field(
        default=None,
        description=(
            "Alertmanager base URL (`alertmanager` source: other alerts of the same target, matching "
            "silences); default: ALERTMANAGER_URL. Nothing is asked when neither is set."
        ),
    )
    alertmanager_token: SecretStr | None = Field(default=None, description="Bearer token for Alertmanager.")


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    import psutil

    collectors = {
        "cpu": _cpu,
        "memory": _memory,
        "disk": _disk,
        "processes": _processes,
        "network": _network,
        "load": _load,
    }
    hostname = socket.gethostname()
    elsewhere = alert_targets_elsewhere(ctx.incident, hostname)
    target = {**_prometheus(config, ctx), **_alertmanager(config, ctx)}
    if elsewhere and config.other_targets == "skip":
        return {
            "hostname": hostname,
            "scope": "orchestrator",
            "collected": False,
            "skipped_reason": (
                f"the alert is about {', '.join(elsewhere[:5])}, not this host ({hostname}): "
                "psutil describes only the host opsflow runs on"
            ),
            **target,
        }
    output: dict[str, Any] = {
        "hostname": hostname,
        "scope": "orchestrator",  # the machine opsflow runs on, never the alert's target
        "collected_at": datetime.now(UTC).isoformat(),
        "boot_time": datetime.fromtimestamp(psutil.boot_time(), UTC).isoformat(),
    }
    if elsewhere:
        output["not_the_alert_target"] = True
    for name in dict.fromkeys(config.include):
        output[name] = collectors[name](psutil, config)
    return {**output, **target}


def _prometheus(config: Config, ctx: NodeContext) -> dict[str, Any]:
    """`{"prometheus": ...}` for an alert run when a Prometheus URL is set, else nothing."""
    url = config.prometheus_url or os.environ.get("PROMETHEUS_URL")
    if not url or not ctx.incident:
        return {}
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"config.prometheus_url: expected an http(s) URL, got {url[:40]!r}")
    from nodes.prometheus import query_alerts

    headers, auth = {}, None
    if config.prometheus_token is not None:
        token = config.prometheus_token.get_secret_value()
        ctx.secrets.add(token)
        headers["Authorization"] = f"Bearer {token}"
    if config.prometheus_username and config.prometheus_password is not None:
        ctx.secrets.add(config.prometheus_password.get_secret_value())
        auth = (config.prometheus_username, config.prometheus_password.get_secret_value())
    record = query_alerts(
        ctx.incident,
        url,
        headers=headers,
        auth=auth,
        lookback_minutes=config.lookback_minutes,
        timeout=ctx.time_left(config.prometheus_timeout_seconds),
    )
    return {"prometheus": record}


_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1"}


def alert_targets_elsewhere(incident: dict[str, Any] | None, hostname: str | None = None) -> list[str]:
    """The alert targets that are not this host; empty when there is no alert or one is about here.

    An alert that names no target at all counts as elsewhere: nothing says it is about this host.
    """
    if not incident:
        return []
    hostname = (hostname or socket.gethostname()).lower()
    here = {hostname, hostname.split(".")[0], *_LOCAL_NAMES}
    targets = []
    for alert in incident.get("alerts") or []:
        labels = alert.get("labels") or {}
        name = next((labels[k] for k in ("instance", "host", "hostname", "node") if labels.get(k)), None)
        name = str(name or alert.get("host") or "")
        bare = name.lower().rsplit(":", 1)[0] if name.count(":") == 1 else name.lower()
        if bare and (bare in here or bare.split(".")[0] in here):
            return []
        targets.append(name or "an unnamed target")
    return list(dict.fromkeys(targets))


def _cpu(psutil, config: Config) -> dict[str, Any]:
    interval = config.cpu_interval or None
    if config.per_cpu:
        per_cpu = psutil.cpu_percent(interval=interval, percpu=True)
        percent = round(sum(per_cpu) / len(per_cpu), 1) if per_cpu else 0.0
    else:
        per_cpu = None
        percent = psutil.cpu_percent(interval=interval)
    result = {"percent": percent, "count": psutil.cpu_count() or 1}
    if per_cpu is not None:
        result["per_cpu"] = per_cpu
    return result


def _memory(psutil, config: Config) -> dict[str, Any]:
    mem = psutil.virtual_memory()
    swap = psutil.swap_memory()
    return {
        "percent": mem.percent,
        "total": mem.total,
        "available": mem.available,
        "used": mem.used,
        "swap_percent": swap.percent,
    }


def _disk(psutil, config: Config) -> dict[str, Any]:
    try:
        usage = psutil.disk_usage(config.disk_path)
    except (FileNotFoundError, PermissionError) as exc:
        raise ConfigError(f"config.disk_path: cannot read {config.disk_path!r}: {exc}") from exc
    return {
        "path": config.disk_path,
        "percent": usage.percent,
        "total": usage.total,
        "used": usage.used,
        "free": usage.free,
    }


def _load(psutil, config: Config) -> dict[str, Any]:
    one, five, fifteen = psutil.getloadavg()
    cpus = psutil.cpu_count() or 1
    return {
        "1m": round(one, 2),
        "5m": round(five, 2),
        "15m": round(fifteen, 2),
        "per_cpu_1m": round(one / cpus, 2),
    }


def _processes(psutil, config: Config) -> dict[str, Any]:
    rows = []
    count = 0
    for proc in psutil.process_iter(["pid", "name", "username", "memory_percent", "memory_info"]):
        count += 1
        info = proc.info
        if info.get("memory_percent") is None:
            continue
        rows.append(info)
    rows.sort(key=lambda r: r["memory_percent"], reverse=True)
    top = [
        {
            "pid": r["pid"],
            "name": r["name"],
            "user": r.get("username"),
            "memory_percent": round(r["memory_percent"], 2),
            "rss": r["memory_info"].rss if r.get("memory_info") else None,
        }
        for r in rows[: config.top_processes]
    ]
    return {"count": count, "top_memory": top, "self_pid": os.getpid()}


def _network(psutil, config: Config) -> dict[str, Any]:
    counters = psutil.net_io_counters()
    return {
        "bytes_sent": counters.bytes_sent,
        "bytes_recv": counters.bytes_recv,
        "errin": counters.errin,
        "errout": counters.errout,
        "dropin": counters.dropin,
        "dropout": counters.dropout,
        "sampled_at": time.time(),
    }


def _alertmanager(config: Config, ctx: NodeContext) -> dict[str, Any]:
    """`{"alertmanager": ...}` for an alert run when an Alertmanager URL is set, else nothing."""
    url = config.alertmanager_url or os.environ.get("ALERTMANAGER_URL")
    if not url or not ctx.incident:
        return {}
    if not url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"config.alertmanager_url: expected an http(s) URL, got {url[:40]!r}")
    from nodes.alertmanager_source import around

    headers = {}
    if config.alertmanager_token is not None:
        token = config.alertmanager_token.get_secret_value()
        ctx.secrets.add(token)
        headers["Authorization"] = f"Bearer {token}"
    timeout = ctx.time_left(config.prometheus_timeout_seconds)
    return {"alertmanager": around(ctx.incident, url, headers=headers, timeout=timeout)}
