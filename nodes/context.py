"""`context` node: a snapshot of the host (cpu, memory, disk, load, processes, network) via psutil."""

from __future__ import annotations

import os
import socket
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    cpu_interval: float = Field(
        default=0.1,
        ge=0,
        le=5,
        description="Seconds to sample CPU usage over (0 compares with the previous call).",
    )


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
    output: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "collected_at": datetime.now(UTC).isoformat(),
        "boot_time": datetime.fromtimestamp(psutil.boot_time(), UTC).isoformat(),
    }
    for name in dict.fromkeys(config.include):
        output[name] = collectors[name](psutil, config)
    return output


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
