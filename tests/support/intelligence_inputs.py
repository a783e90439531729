"""Builders for what the intelligence node reads: host metrics, checks, alerts and incidents, in a context."""

from __future__ import annotations

from nodes.base import NodeContext, RunInfo, Secrets

__all__ = ["alert", "check", "checks", "host", "incident", "make_ctx"]


def make_ctx(nodes=None, incident=None, secrets=(), **kw) -> NodeContext:
    return NodeContext(
        run=RunInfo(trace_id="t-1", definition="test"),
        node_id="analyze",
        nodes=nodes or {},
        incident=incident,
        secrets=Secrets(set(secrets)),
        **kw,
    )


def host(cpu=10.0, memory=40.0, disk=50.0, per_cpu=0.2, path="/", processes=None):
    out = {
        "hostname": "web-1",
        "cpu": {"percent": cpu, "count": 4},
        "memory": {
            "percent": memory,
            "total": 8 << 30,
            "available": 1 << 30,
            "used": 7 << 30,
            "swap_percent": 0,
        },
        "disk": {"path": path, "percent": disk, "total": 100 << 30, "used": 95 << 30, "free": 5 << 30},
        "load": {"1m": per_cpu * 4, "5m": 1.0, "15m": 1.0, "per_cpu_1m": per_cpu},
    }
    if processes is not None:
        out["processes"] = {"count": len(processes), "top_memory": processes, "self_pid": 1}
    return out


def alert(title, severity="critical", status="firing", **extra):
    return {
        "fingerprint": f"fp-{title}",
        "status": status,
        "severity": severity,
        "title": title,
        "description": extra.pop("description", ""),
        "labels": extra.pop("labels", {}),
        "annotations": extra.pop("annotations", {}),
        "source": "alertmanager",
        "starts_at": "2024-05-01T10:00:00Z",
        "ends_at": None,
        "generator_url": None,
    }


def incident(alerts, status="open", severity="critical", title="Incident"):
    return {
        "id": 1,
        "key": "k",
        "status": status,
        "severity": severity,
        "title": title,
        "alert_count": len(alerts),
        "alerts": alerts,
    }


def checks(*items, status=None):
    worst = status or ("critical" if any(c["status"] == "critical" for c in items) else "ok")
    return {"status": worst, "checks": list(items)}


def check(name, status, value, metric=None, message=None):
    return {
        "name": name,
        "metric": metric or name,
        "value": value,
        "status": status,
        "warning": 80,
        "critical": 90,
        "message": message or f"{name} is {value}",
    }
