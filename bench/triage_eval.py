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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

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


@dataclass
class Scenario:
    name: str
    alertname: str
    severity: str  # as the source labels it
    expect_severity: str
    expect_category: str | None
    facts: list[str]
    fmt: str = "alertmanager"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    expr: str | None = None
    series: list[float] | None = None  # the expression's values over the lookback, oldest first


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


def _sc(name, alertname, severity, category, facts, **kw) -> Scenario:
    return Scenario(name, alertname, severity, kw.pop("expect", severity), category, facts, **kw)


RB = "https://runbooks.example/"
SCENARIOS = [
    _sc(
        "node down",
        "InstanceDown",
        "critical",
        "availability",
        ["db-7:9100", "up{"],
        labels={"instance": "db-7:9100", "job": "node"},
        expr='up{job="node"} == 0',
        series=[1, 1, 0, 0],
    ),
    _sc(
        "target down warning",
        "TargetDown",
        "warning",
        "availability",
        ["kafka"],
        labels={"job": "kafka", "instance": "kafka-2:9308"},
        expr="100 * (count(up == 0) by (job)) > 10",
    ),
    _sc(
        "blackbox probe",
        "ProbeFailed",
        "critical",
        "availability",
        ["shop.example"],
        labels={"instance": "https://shop.example", "job": "blackbox"},
        expr="probe_success == 0 unless up == 0",
    ),
    _sc(
        "disk filling",
        "NodeFilesystemSpaceFillingUp",
        "warning",
        "disk",
        ["/var/lib/pgsql", RB + "disk"],
        labels={"instance": "db-7:9100", "mountpoint": "/var/lib/pgsql", "device": "/dev/sdb1"},
        annotations={"runbook_url": RB + "disk", "summary": "Filesystem is predicted to run out of space."},
        expr='node_filesystem_avail_bytes{mountpoint="/var/lib/pgsql"} / node_filesystem_size_bytes < .1',
        series=[0.14, 0.12, 0.09, 0.07],
    ),
    _sc(
        "disk almost full",
        "NodeFilesystemAlmostOutOfSpace",
        "critical",
        "disk",
        ["/data"],
        labels={"instance": "es-3:9100", "mountpoint": "/data"},
        expr="node_filesystem_avail_bytes < 1e9",
    ),
    _sc(
        "inodes",
        "NodeFilesystemFilesFillingUp",
        "warning",
        "disk",
        ["web-4:9100"],
        labels={"instance": "web-4:9100", "mountpoint": "/"},
        expr="node_filesystem_files_free / node_filesystem_files < 0.05",
    ),
    _sc(
        "memory high",
        "HighMemoryUsage",
        "warning",
        "memory",
        ["cache-1:9100", "now 0.93"],
        labels={"instance": "cache-1:9100"},
        expr="1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes > 0.9",
        series=[0.88, 0.91, 0.93],
    ),
    _sc(
        "oom risk",
        "NodeMemoryMajorPagesFaults",
        "warning",
        "memory",
        ["batch-2:9100"],
        labels={"instance": "batch-2:9100"},
        expr="rate(node_vmstat_pgmajfault[5m]) > 500 and on() node_memory_MemAvailable_bytes < 1e9",
    ),
    _sc(
        "container memory",
        "ContainerMemoryNearLimit",
        "critical",
        "memory",
        ["api-5b7"],
        labels={"pod": "api-5b7", "namespace": "shop", "instance": "10.0.0.4:10250"},
        expr="container_memory_working_set_bytes / container_spec_memory_limit_bytes > 0.95",
    ),
    _sc(
        "cpu saturated",
        "HostHighCpuLoad",
        "warning",
        "cpu",
        ["worker-9:9100"],
        labels={"instance": "worker-9:9100"},
        expr='avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[2m])) < 0.1',
        series=[0.2, 0.08, 0.05],
    ),
    _sc(
        "cpu throttling",
        "CPUThrottlingHigh",
        "info",
        "cpu",
        ["ingest-7c"],
        labels={"pod": "ingest-7c", "namespace": "data", "container": "ingest"},
        expr="sum(increase(container_cpu_cfs_throttled_periods_total[5m]))"
        " / sum(increase(container_cpu_cfs_periods_total[5m])) > 0.25",
    ),
    _sc(
        "load",
        "NodeLoadHigh",
        "warning",
        "load",
        ["build-1:9100"],
        labels={"instance": "build-1:9100"},
        expr="node_load15 / count without (cpu) (node_cpu_seconds_total{mode='idle'}) > 2",
    ),
    _sc(
        "crash loop",
        "KubePodCrashLooping",
        "warning",
        "restarts",
        ["api-7d9c5b-x2x4k", RB + "crash"],
        labels={"pod": "api-7d9c5b-x2x4k", "namespace": "shop", "container": "api"},
        annotations={"runbook_url": RB + "crash", "summary": "Pod is crash looping."},
        expr='max_over_time(kube_pod_container_status_waiting_reason{reason="CrashLoopBackOff"}[5m]) >= 1',
    ),
    _sc(
        "oom killed",
        "ContainerOOMKilled",
        "warning",
        "restarts",
        ["worker-0"],
        labels={"pod": "worker-0", "namespace": "jobs"},
        expr='kube_pod_container_status_last_terminated_reason{reason="OOMKilled"} == 1',
    ),
    _sc(
        "restarts",
        "ServiceRestartingOften",
        "critical",
        "restarts",
        ["payments"],
        labels={"service": "payments", "instance": "pay-1:8080"},
        expr="increase(process_start_time_seconds[1h]) > 3",
    ),
    _sc(
        "cert expiry",
        "SSLCertExpiringSoon",
        "warning",
        "certificate",
        ["api.example.com"],
        labels={"instance": "https://api.example.com", "job": "blackbox"},
        expr="probe_ssl_earliest_cert_expiry - time() < 86400 * 14",
        series=[1.2e6, 1.1e6],
    ),
    _sc(
        "tls handshake",
        "TLSHandshakeErrors",
        "critical",
        "certificate",
        ["lb-1"],
        labels={"instance": "lb-1:9100"},
    ),
    _sc(
        "replication lag",
        "PostgresReplicationLagHigh",
        "warning",
        "replication",
        ["pg-replica-2"],
        labels={"instance": "pg-replica-2:9187"},
        expr="pg_replication_lag_seconds > 30",
        series=[12, 25, 41],
    ),
    _sc(
        "mysql replica",
        "MysqlSlaveReplicationLag",
        "critical",
        "replication",
        ["mysql-2"],
        labels={"instance": "mysql-2:9104"},
        expr="mysql_slave_status_seconds_behind_master > 300",
    ),
    _sc(
        "kafka lag",
        "KafkaConsumerGroupLag",
        "warning",
        "replication",
        ["orders"],
        labels={"consumergroup": "orders", "instance": "kafka-exporter:9308"},
        expr="sum by (consumergroup) (kafka_consumergroup_lag) > 1e5",
    ),
    _sc(
        "queue backlog",
        "RabbitmqQueueBacklog",
        "warning",
        "queue",
        ["rabbit-1"],
        labels={"instance": "rabbit-1:15692", "queue": "emails"},
        expr="rabbitmq_queue_messages_ready > 10000",
        series=[5000, 9000, 14000],
    ),
    _sc(
        "sidekiq",
        "SidekiqQueueTooLarge",
        "warning",
        "queue",
        ["sidekiq"],
        labels={"job": "sidekiq", "instance": "app-3:9292"},
    ),
    _sc(
        "latency p99",
        "APIHighLatencyP99",
        "critical",
        "latency",
        ["checkout"],
        labels={"service": "checkout", "instance": "checkout:8080"},
        expr="histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket[5m]))) > 1.5",
        series=[0.4, 1.7, 2.1],
    ),
    _sc(
        "slow queries",
        "PostgresSlowQueries",
        "warning",
        "latency",
        ["pg-main"],
        labels={"instance": "pg-main:9187"},
    ),
    _sc(
        "error rate",
        "HighHTTPErrorRate",
        "critical",
        "errors",
        ["gateway"],
        labels={"service": "gateway", "instance": "gw-1:8080"},
        expr='sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m])) > 0.05',
    ),
    _sc(
        "job failed",
        "KubeJobFailed",
        "warning",
        "errors",
        ["nightly-backup"],
        labels={"job_name": "nightly-backup", "namespace": "ops", "instance": "ksm:8080"},
        expr="kube_job_failed > 0",
    ),
    _sc(
        "unknown custom",
        "BusinessKPIDrop",
        "warning",
        None,
        ["shop-frontend"],
        labels={"service": "shop-frontend"},
        expr="sum(rate(orders_total[10m])) < 5",
    ),
    _sc("watchdog info", "Watchdog", "info", None, ["alertmanager"], labels={"instance": "alertmanager"}),
    _sc(
        "severity none",
        "InfoInhibitor",
        "none",
        None,
        ["monitoring"],
        labels={"namespace": "monitoring"},
        expect="info",
    ),
    _sc(
        "grafana memory",
        "High memory usage",
        "warning",
        "memory",
        ["us-1"],
        fmt="grafana",
        labels={"zone": "us-1", "instance": "grafana-host-1"},
        annotations={
            "description": "The system has high memory usage",
            "runbook_url": "https://myrunbook.com/runbook/1234",
        },
    ),
    _sc(
        "grafana cpu",
        "High CPU usage",
        "critical",
        "cpu",
        ["eu-1"],
        fmt="grafana",
        labels={"zone": "eu-1", "instance": "grafana-host-2"},
    ),
    _sc(
        "grafana disk",
        "Disk space low",
        "warning",
        "disk",
        ["nas-1"],
        fmt="grafana",
        labels={"instance": "nas-1", "mountpoint": "/srv"},
    ),
    _sc(
        "datadog disk",
        "Disk usage high on nfs-2",
        "critical",
        "disk",
        ["nfs-2"],
        fmt="datadog",
        labels={"instance": "nfs-2"},
        annotations={"description": "system.disk.in_use over 0.95"},
    ),
    _sc(
        "datadog latency",
        "p95 latency above SLO",
        "warning",
        "latency",
        ["web-7"],
        fmt="datadog",
        labels={"instance": "web-7"},
        annotations={"description": "trace.http.request.duration p95 > 800ms"},
    ),
    _sc(
        "datadog down",
        "Host is down: db-9",
        "critical",
        "availability",
        ["db-9"],
        fmt="datadog",
        labels={"instance": "db-9"},
    ),
]


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
