"""What the notify tests share: a sample incident and analysis, a context, the node run directly.

The recording HTTP server they send to is the `sink` fixture in tests/conftest.py.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from pytest_httpserver import HTTPServer

from nodes.base import NodeContext, RunInfo
from nodes.notify import node as notify

__all__ = [
    "ANALYSIS",
    "SECRET",
    "bodies",
    "fixture",
    "incident",
    "make_ctx",
    "run_node",
]

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "outbound"
SECRET = "s3cr3t-T0KEN-9f8e7d"


def fixture(name: str):
    return json.loads((FIXTURES / name).read_text())


def make_ctx(incident=None, nodes=None, trace=None, node_id="notify") -> NodeContext:
    run = RunInfo(trace_id=trace or uuid.uuid4().hex, definition="alert-triage")
    return NodeContext(run=run, node_id=node_id, incident=incident, nodes=nodes or {})


def incident(status="open", state=None) -> dict:
    return {
        "id": 7,
        "key": "group-key-abc",
        "status": status,
        "severity": "critical",
        "title": "HighMemory",
        "alert_count": 2,
        "firing_count": 2 if status == "open" else 0,
        "alerts": [
            {
                "status": "firing",
                "title": "HighMemory",
                "labels": {"alertname": "HighMemory", "instance": h},
                "generator_url": f"http://prom:9090/graph?h={h}",
            }
            for h in ("web-01", "db-01")
        ],
        "notification_state": state or {},
    }


ANALYSIS = {
    "summary": "Memory on db-01 is at 97 %; postgres is the top consumer.",
    "probable_cause": "A runaway query",
    "severity": "critical",
    "recommendations": [{"title": "Kill the query", "description": "pg_cancel_backend", "priority": "high"}],
    "provider": "local",
    "model": "rules",
}


def run_node(config: dict, ctx: NodeContext) -> dict:
    return notify.run(notify.Config.model_validate(config), ctx)


def bodies(server: HTTPServer, path: str | None = None) -> list[dict]:
    return [req.get_json(silent=True) for req, _ in server.log if path is None or req.path == path]
