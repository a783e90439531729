"""A realistic alert payload for `pipeline run --sample` and for trying definitions locally."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["SAMPLE_PAYLOAD", "sample_payload"]

# An Alertmanager v4 firing group: HighMemory on db-01 (critical) and web-01 (warning).
SAMPLE_PAYLOAD: dict[str, Any] = {
    "receiver": "opsflow",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "HighMemory",
                "instance": "db-01",
                "job": "node",
                "severity": "critical",
            },
            "annotations": {
                "description": "db-01 memory at 97% for 5m",
                "summary": "Memory usage above 95%",
            },
            "startsAt": "2026-11-22T18:22:52Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=node_memory_MemAvailable_bytes",
            "fingerprint": "7784fcd5d978e00f",
        },
        {
            "status": "firing",
            "labels": {
                "alertname": "HighMemory",
                "instance": "web-01",
                "job": "node",
                "severity": "warning",
            },
            "annotations": {
                "description": "web-01 memory at 91% for 5m",
                "summary": "Memory usage above 85%",
            },
            "startsAt": "2026-11-22T18:22:52Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph?g0.expr=node_memory_MemAvailable_bytes",
            "fingerprint": "c36d5cbacd34d84c",
        },
    ],
    "groupLabels": {"alertname": "HighMemory"},
    "commonLabels": {"alertname": "HighMemory", "job": "node"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "version": "4",
    "groupKey": '{}:{alertname="HighMemory"}',
    "truncatedAlerts": 0,
}


def sample_payload() -> dict[str, Any]:
    """A fresh copy, so a run cannot change the sample for the next one."""
    return copy.deepcopy(SAMPLE_PAYLOAD)
