"""A retried ingest whose first attempt did commit is not taken for a duplicate (which silences the page).

Through a real flow run on the session's Prefect server, with the real ingest handler and
incident store: the first attempt commits and is then given up by the node's timeout (as
when the store answers slowly after the write); the retry must return that outcome, so
the notify guarded by `!(nodes.ingest.duplicate)`, as in the shipped definitions, sends.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from pytest_httpserver import HTTPServer

import nodes
from nodes.base import NodeContext
from nodes.ingest import node as ingest

pytestmark = pytest.mark.timeout(120)

INBOUND = Path(__file__).resolve().parent / "fixtures" / "inbound"


class ingest_then_stall:  # noqa: N801 - a node type module stand-in
    """The real ingest, whose first attempt outlives its timeout after it has committed."""

    Config = ingest.Config

    @staticmethod
    def run(config: ingest.Config, ctx: NodeContext) -> dict[str, Any]:
        output = ingest.run(config, ctx)
        if ctx.attempt == 1:
            time.sleep(3)  # past the node's 1 s timeout: the attempt is given up, its write stays
        return output


def test_a_retry_of_an_ingest_that_committed_still_pages(prefect_api, httpserver: HTTPServer, monkeypatch):
    from flows.pipeline import run_pipeline

    monkeypatch.setitem(nodes.NODE_TYPES, "ingest_then_stall", "test_ingest_retry:ingest_then_stall")
    httpserver.expect_request("/page").respond_with_data("ok")
    payload = json.loads((INBOUND / "alertmanager-firing-group.json").read_text())
    payload["groupKey"] = f"committed-then-stalled-{time.time_ns()}"
    definition = {
        "name": "committed-then-stalled",
        "version": "1.0",
        "nodes": [
            {"id": "ingest", "type": "ingest_then_stall", "timeout_seconds": 1, "retries": 2, "next": "page"},
            {
                "id": "page",
                "type": "notify",
                "when": "!(nodes.ingest.duplicate)",
                "config": {"driver": "webhook", "url": httpserver.url_for("/page")},
            },
        ],
    }
    state = asyncio.run(run_pipeline(definition=definition, payload=payload, return_state=True))
    result = state.result(raise_on_failure=False)
    outcome = result["node_results"]["ingest"]
    assert state.is_completed(), result["error"]
    assert outcome["attempts"] == 2
    assert outcome["output"]["duplicate"] is False and outcome["output"]["created"] is True
    assert outcome["output"]["counts"]["new"] == len(payload["alerts"])
    assert "page" in result["executed_nodes"] and len(httpserver.log) == 1
