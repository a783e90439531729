"""Triage evaluation: labelled alert scenarios through ingest → local rules → message, scored.

Each scenario is a real-shaped Alertmanager, Grafana or Datadog payload, optionally with the
Prometheus series of its expression (as the `prometheus` context source reports it), and
with the orchestrator host's psutil numbers deliberately high: a message must never cite
them for another target. Scores: severity exact, cause category, key facts mentioned, no
foreign-host claims. Usage: `./dev python bench/triage_eval.py` (prints the table).
"""

from __future__ import annotations

import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.triage_scenarios import SCENARIOS, Scenario
from nodes.base import NodeContext, RunInfo
from nodes.intelligence import alerts as alert_rules
from nodes.notify.message import build_message
from nodes.prometheus import summarise
from nodes.runtime import execute_node

THRESHOLDS = {"severity": 1.0, "no_foreign_host": 1.0, "category": 0.8}
ORCHESTRATOR = {  # what psutil says about the opsflow host: busy, and never the target
    "hostname": "opsflow-vm",
    "scope": "orchestrator",
    "cpu": {"percent": 100.0, "count": 2},
    "memory": {"percent": 97.0, "total": 1, "available": 0, "used": 1, "swap_percent": 0.0},
    "disk": {"path": "/", "percent": 95.0, "total": 100, "used": 95, "free": 5},
}
FOREIGN = ("opsflow-vm", "100.0%", "97.0%", "95.0%")


def _am(s: Scenario) -> dict[str, Any]:
    labels = {"alertname": s.alertname, "severity": s.severity, **s.labels}
    url = f"http://prometheus:9090/graph?g0.expr={quote(s.expr)}&g0.tab=1" if s.expr else ""
    return {
        "receiver": "opsflow",
        "status": "firing",
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": s.annotations,
                "startsAt": "2026-11-30T09:12:07Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": url,
                "fingerprint": uuid.uuid4().hex[:16],
            }
        ],
        "groupLabels": {"alertname": s.alertname},
        "commonLabels": labels,
        "commonAnnotations": s.annotations,
        "externalURL": "http://alertmanager:9093",
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{s.alertname}"}}',
    }


def _grafana(s: Scenario) -> dict[str, Any]:
    body = _am(s)
    body.update(orgId=1, title=f"[FIRING:1] {s.alertname}", state="alerting", message="")
    body["alerts"][0].update(silenceURL="https://grafana.example/alerting/silence/new", values={"B": 1})
    return body


def _datadog(s: Scenario) -> dict[str, Any]:
    return {
        "title": f"[Triggered] {s.alertname}",
        "event_type": "metric_alert_monitor",
        "alert_type": {"critical": "error", "warning": "warning"}.get(s.severity, "info"),
        "body": s.annotations.get("description", ""),
        "hostname": s.labels.get("instance", ""),
        "date": "1764493927000",
        "id": uuid.uuid4().hex,
        "alert_id": uuid.uuid4().hex[:8],
        "tags": f"instance:{s.labels.get('instance', '')}",
    }


def _prometheus_record(s: Scenario) -> dict[str, Any] | None:
    if not (s.expr and s.series):
        return None
    now = datetime.now(UTC).timestamp()
    values = [[now - 60 * (len(s.series) - i - 1), str(v)] for i, v in enumerate(s.series)]
    series = summarise({"metric": s.labels, "values": values}, datetime.fromtimestamp(values[0][0], UTC))
    query = {"expr": s.expr, "status": "ok", "series": [series], "series_total": 1, "duration_ms": 1.0}
    return {"url": "http://prometheus:9090", "queries": [query]}


def evaluate(s: Scenario) -> dict[str, Any]:
    payload = {"alertmanager": _am, "grafana": _grafana, "datadog": _datadog}[s.fmt](s)
    ctx = NodeContext(run=RunInfo(trace_id=uuid.uuid4().hex, definition="triage-eval"), payload=payload)
    ctx.nodes["ingest"] = execute_node("ingest", "ingest", {"driver": "auto", "store": False}, ctx)["output"]
    ctx.incident = ctx.nodes["ingest"]["incident"]
    context = dict(ORCHESTRATOR)
    if record := _prometheus_record(s):
        context["prometheus"] = record
    ctx.nodes["context"] = context
    ctx.nodes["analyze"] = execute_node("analyze", "intelligence", {"provider": "local"}, ctx)["output"]
    message = build_message(ctx)
    alert = ctx.incident["alerts"][0]
    shown = "\n".join(
        [message.title, message.text, *(f"{k}: {v}" for k, v in message.fields.items())]
        + [f"{link['title']} {link['url']}" for link in message.links]
    )
    got_category = alert_rules.category(alert)
    cause = message.probable_cause or ""
    return {
        "name": s.name,
        "format": s.fmt,
        "severity": message.level == s.expect_severity,
        "category": got_category == s.expect_category
        and (
            cause.startswith("None found")
            if s.expect_category is None
            else not cause.startswith("None found")
        ),
        "facts": sum(f in shown for f in s.facts) / len(s.facts),
        "no_foreign_host": not any(word in shown for word in FOREIGN),
        "got": f"{message.level}/{got_category}",
    }


def run_all() -> tuple[list[dict[str, Any]], dict[str, float]]:
    results = [evaluate(s) for s in SCENARIOS]
    n = len(results)
    scores = {
        "severity": sum(r["severity"] for r in results) / n,
        "category": sum(r["category"] for r in results) / n,
        "facts": sum(r["facts"] for r in results) / n,
        "no_foreign_host": sum(r["no_foreign_host"] for r in results) / n,
    }
    return results, scores


def table(results: list[dict[str, Any]], scores: dict[str, float]) -> str:
    lines = [
        "| scenario | format | severity | category | facts | no foreign host | got |",
        "|---|---|---|---|---|---|---|",
    ]
    mark = {True: "yes", False: "**no**"}
    for r in results:
        lines.append(
            f"| {r['name']} | {r['format']} | {mark[r['severity']]} | {mark[r['category']]} | "
            f"{r['facts']:.0%} | {mark[r['no_foreign_host']]} | {r['got']} |"
        )
    lines.append("")
    lines.append("| score | value | target |")
    lines.append("|---|---|---|")
    for key, value in scores.items():
        target = f">= {THRESHOLDS[key]:.0%}" if key in THRESHOLDS else "—"
        lines.append(f"| {key} | {value:.0%} | {target} |")
    return "\n".join(lines)


def main() -> int:
    import logging
    import os
    import tempfile

    logging.disable(logging.WARNING)
    os.environ.setdefault("OPSFLOW_DATABASE_URL", f"sqlite:///{tempfile.mkdtemp()}/eval.db")
    began = time.perf_counter()
    results, scores = run_all()
    print(table(results, scores))
    print(f"\n{len(results)} scenarios in {time.perf_counter() - began:.1f} s")
    return 0 if all(scores[k] >= v for k, v in THRESHOLDS.items()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
