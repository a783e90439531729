"""Prometheus → Alertmanager → `pipeline serve --receiver` → Slack, every part real (but Slack).

Prometheus evaluates an alerting rule over a recording rule of known value, Alertmanager
posts the group to the receiver, the shipped alert-triage runs with PROMETHEUS_URL set, and
a local HTTP server stands in for Slack. Needs Debian's prometheus and prometheus-alertmanager
(`.ci/run` installs them): skipped without them, failed on CI (`CI=true`).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from support.ports import free_port
from support.prefect_server import BIN, PrefectServer, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[1]

RULES = """
groups:
  - name: e2e
    interval: 1s
    rules:
      - record: opsflow_queue_depth
        expr: label_replace(vector(42), "instance", "db-7:9100", "", "")
      - alert: QueueBacklog
        expr: opsflow_queue_depth > 10
        labels:
          severity: warning
        annotations:
          summary: Queue is backing up
          description: "Depth {{ $value }} on {{ $labels.instance }} <!channel> <https://evil.test|x> & act"
          runbook_url: https://runbooks.example/queue-backlog
"""


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        reason = f"{name} is not installed (apt-get install {name}; .ci/run does)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def _spawn(argv: list[str], log, **kw) -> subprocess.Popen:
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kw)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_real_alert_reaches_slack_right_and_escaped(tmp_path, httpserver: HTTPServer):
    prometheus, alertmanager = _binary("prometheus"), _binary("prometheus-alertmanager")
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    server = PrefectServer(tmp_path / "server-home").start()
    p_port, am_port, r_port = free_port(), free_port(), free_port()
    (tmp_path / "rules.yml").write_text(RULES)
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  evaluation_interval: 1s\nrule_files: [rules.yml]\nalerting:\n  alertmanagers:\n"
        f'    - static_configs:\n        - targets: ["127.0.0.1:{am_port}"]\n'
    )
    (tmp_path / "am.yml").write_text(
        "route:\n  receiver: opsflow\n  group_wait: 1s\nreceivers:\n  - name: opsflow\n    webhook_configs:\n"
        f'      - url: "http://127.0.0.1:{r_port}/pipeline?definition=alert-triage"\n'
    )
    env = {
        **server.env,
        "PREFECT_API_URL": server.api_url,
        "PREFECT_HOME": str(tmp_path / "client-home"),
        "PROMETHEUS_URL": f"http://127.0.0.1:{p_port}",
        "SLACK_WEBHOOK_URL": httpserver.url_for("/hook"),
        "OPSFLOW_DATABASE_URL": f"sqlite:///{tmp_path / 'incidents.db'}",
    }
    procs = []
    log = open(tmp_path / "services.log", "w")  # noqa: SIM115 (closed in finally)
    try:
        procs.append(
            _spawn(
                [str(BIN / "pipeline"), "serve", "--receiver", "--port", str(r_port)], log, cwd=ROOT, env=env
            )
        )
        wait_healthy(f"http://127.0.0.1:{r_port}", procs[0], 120, path="/healthz")
        procs.append(
            _spawn(
                [
                    alertmanager,
                    f"--config.file={tmp_path / 'am.yml'}",
                    f"--storage.path={tmp_path / 'am'}",
                    f"--web.listen-address=127.0.0.1:{am_port}",
                    "--cluster.listen-address=",
                ],
                log,
                cwd=tmp_path,
            )
        )
        procs.append(
            _spawn(
                [
                    prometheus,
                    f"--config.file={tmp_path / 'prometheus.yml'}",
                    f"--storage.tsdb.path={tmp_path / 'p'}",
                    f"--web.listen-address=127.0.0.1:{p_port}",
                    f"--web.external-url=http://127.0.0.1:{p_port}",
                    # an alert sent before the notifier found Alertmanager is lost until the
                    # next resend (1 min by default)
                    "--rules.alert.resend-delay=2s",
                ],
                log,
                cwd=tmp_path,
            )
        )
        deadline = time.monotonic() + 240
        while not httpserver.log and time.monotonic() < deadline:
            assert all(p.poll() is None for p in procs), (tmp_path / "services.log").read_text()[-3000:]
            time.sleep(0.5)
        assert httpserver.log, (
            "no Slack message within 240 s: " + (tmp_path / "services.log").read_text()[-3000:]
        )
        run_id = _run_of(json.loads(httpserver.log[0][0].data))
        told = _told_by_prefect(server.api_url, run_id, env)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        log.close()
        server.stop()
    # what the run says it did, in its Prefect logs and in `pipeline show`: the analysis and the delivery
    logs, shown_run = told
    for said in (logs, shown_run):
        assert "analysis (local): " in said and " — cause: " in said, said[-3000:]
        assert "slack: delivered" in said, said[-3000:]
    analysis = next(line for line in logs.splitlines() if "analysis (local): " in line)
    said = analysis[analysis.index("analysis (local): ") :]
    assert said[:100] in shown_run  # the same line (`show` clips it shorter)
    server.assert_clean_log()
    body = json.loads(httpserver.log[0][0].data)
    (tmp_path / "slack-body.json").write_text(json.dumps(body, indent=2))
    texts = [b["text"]["text"] for b in body["blocks"] if "text" in b]
    texts += [e["text"] for b in body["blocks"] if b["type"] == "context" for e in b["elements"]]
    texts += [e["text"] for a in body["attachments"] for b in a.get("blocks", []) for e in b["elements"]]
    shown = "\n".join(texts)
    assert ":warning: *WARNING*" in shown and "target *db-7:9100*" in shown
    assert "*value:* now 42 (at firing 42, min 42, max 42, flat)" in shown  # the target's numbers
    assert "&lt;!channel&gt;" in shown and "<!channel>" not in shown and "&amp; act" in shown
    assert (
        f"127.0.0.1:{p_port}/graph?g0.expr=opsflow_queue_depth" in shown and "|Source: QueueBacklog>" in shown
    )
    assert "|Prefect flow run>" in shown and "|Silence in Alertmanager>" in shown


def _run_of(slack_body: dict) -> str:
    """The flow run id of the message's "Prefect flow run" link."""
    links = json.dumps(slack_body)
    marker = "/flow-runs/flow-run/"
    assert marker in links, links[:2000]
    start = links.index(marker) + len(marker)
    return links[start : start + 36]


def _told_by_prefect(api_url: str, run_id: str, env: dict[str, str]) -> tuple[str, str]:
    """The run's log lines (once it is final and its logs arrived) and `pipeline show RUN`."""
    import uuid

    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    lines = ""
    with SyncPrefectClient(api_url) as client:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            final = client.read_flow_run(uuid.UUID(run_id)).state.is_final()
            logs = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(run_id)]))
            )
            lines = "\n".join(log.message for log in logs)
            if final and "slack: delivered" in lines:
                break
            time.sleep(0.5)
    shown = subprocess.run(
        [str(BIN / "pipeline"), "show", run_id],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr[-3000:]
    return lines, shown.stdout
