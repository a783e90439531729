"""The secrets sweep's tools: each secret and the forms it could leak in, the search for them,
the `pipeline` CLI in a subprocess, and readers of everything a run leaves behind.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# the console script users run (the `pipeline` script)
PIPELINE = Path(sys.executable).with_name("pipeline")


@dataclass(frozen=True)
class Secret:
    """One credential: where it is set, its value, and the distinctive token inside the value."""

    name: str
    value: str
    token: str
    extra_encodings: tuple[str, ...] = ()

    def needles(self) -> dict[str, str]:
        """Every form the secret could leak in: the token, and encodings of the whole value."""
        forms = {
            "raw": self.token,
            "url-encoded": urllib.parse.quote(self.value, safe=""),
            "base64": _b64(self.value),
            "base64 token": _b64(self.token),
        }
        for i, extra in enumerate(self.extra_encodings):
            forms[f"encoding {i}"] = extra
        return {how: text for how, text in forms.items() if len(text) >= 8}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def basic_auth(user: str, password: str) -> str:
    return _b64(f"{user}:{password}")


def smtp_plain(user: str, password: str) -> str:
    return _b64(f"\0{user}\0{password}")


def leaks(surfaces: dict[str, str | bytes], secrets: list[Secret]) -> list[str]:
    """`surface: secret (form) in …context…` for every secret form found in any surface."""
    found = []
    for where, text in surfaces.items():
        for secret in secrets:
            for how, needle in secret.needles().items():
                pattern = needle.encode() if isinstance(text, bytes) else needle
                at = text.find(pattern)
                if at >= 0:
                    context = text[max(0, at - 100) : at + len(pattern) + 40]
                    found.append(f"{where}: {secret.name} ({how}) in …{context!r}…")
    return sorted(set(found))


def sweep_definition(
    name: str, url: Callable[[str], str], prefix: str, secret_block: str, typed: dict[str, str]
) -> dict:
    """Every AI provider and every notify driver, each reading its credential its own way:
    implicitly from its environment variable, as `${ENV}`, as `${secret:BLOCK}`, or `typed` in.

    With a `prefix` (`/fail`) every node is optional but the notify, so all of them run and fail.
    """
    fails = bool(prefix)
    analyses = {
        # the base URL from OPENAI_BASE_URL, as users of proxies set it
        "openai": {"provider": "openai", "api_key": "${OPENAI_API_KEY}"},
        "anthropic": {"provider": "anthropic", "base_url": url(prefix or "/")},
        "anthropic-bearer": {
            "provider": "anthropic",
            "base_url": url(prefix or "/"),
            "auth": "bearer",
            "api_key": "${secret:" + secret_block + "}",
        },
        "compatible": {
            "provider": "openai-compatible",
            "base_url": url(f"{prefix}/v1"),
            "model": "llama-sweep",
            "api_key": typed["api_key"],
        },
    }
    channels = [
        {"driver": "slack", "webhook_url": "${SLACK_WEBHOOK_URL}"},
        {"driver": "slack", "channel": "#ops-sweep", "api_url": url(f"{prefix}/slack/api")},
        {"driver": "teams"},
        {"driver": "discord"},
        {"driver": "pagerduty", "events_url": url(f"{prefix}/pagerduty/v2/enqueue")},
        {
            "driver": "webhook",
            "url": "${SWEEP_WEBHOOK_URL}",
            "headers": {"X-Sweep-Token": "${SWEEP_WEBHOOK_TOKEN}"},
        },
        {
            "driver": "webhook",
            "url": typed["hook_url"],
            "headers": {"X-Sweep-Token": typed["header"]},
        },
        {"driver": "email", "to": ["oncall@example.test"], "security": "none"},
        {"driver": "console"},
    ]
    policy = [{"driver": "webhook", "url": "${SWEEP_POLICY_WEBHOOK_URL}"}]
    return {
        "name": name,
        "version": "1.0",
        "description": "secrets sweep: every provider and driver",
        "defaults": {"max_retries": 0, "retry_delay_seconds": 0, "timeout_seconds": 60},
        "nodes": [
            {"id": "ingest", "type": "ingest", "required": not fails, "next": list(analyses)},
            *(
                {"id": nid, "type": "intelligence", "required": not fails, "config": cfg, "next": "notify"}
                for nid, cfg in analyses.items()
            ),
            {
                "id": "notify",
                "type": "notify",
                "config": {
                    "title": "{{ nodes.openai.summary | default('sweep', true) }}",
                    "message": "{{ nodes.anthropic.probable_cause | default('') }}",
                    "channels": channels,
                },
            },
        ],
        "on_success": policy,
        "on_failure": policy,
    }


# -- running the CLI, and what a run leaves behind -------------------------------------------


@dataclass
class Run:
    label: str
    args: list[str]
    code: int
    stdout: str
    stderr: str
    result: dict | None = None
    records: dict[str, str] = field(default_factory=dict)


def pipeline(label: str, args: list[str], env: dict[str, str]) -> Run:
    """`pipeline ARGS` as a user runs it: a fresh process, settings from the environment."""
    done = subprocess.run(
        [str(PIPELINE), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    run = Run(label, args, done.returncode, done.stdout, done.stderr)
    if "--json" in args and done.stdout.strip():
        run.result = json.loads(done.stdout)
    return run


def sqlite_dump(path: Path) -> str:
    """Every row of every table, as text (the incident store)."""
    with sqlite3.connect(path) as db:
        tables = [row[0] for row in db.execute("select name from sqlite_master where type = 'table'")]
        lines = []
        for table in tables:
            for row in db.execute(f'select * from "{table}"'):
                lines.append(f"{table}: {row!r}")
    return "\n".join(lines)


def file_bytes(*paths: Path) -> bytes:
    """The raw bytes of the files that exist (a database and its WAL): what a disk image would show."""
    return b"".join(p.read_bytes() for p in paths if p.exists())


def prefect_records(run_id: str) -> dict[str, str]:
    """What the Prefect API keeps of one flow run: logs, artifacts, the run, its task runs, events."""
    return asyncio.run(_prefect_records(run_id))


async def _prefect_records(run_id: str) -> dict[str, str]:
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.events.filters import EventAnyResourceFilter, EventFilter

    run_uuid = uuid.UUID(run_id)
    async with get_client() as client:
        logs = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_uuid])))
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_uuid]))
        )
        flow_run = await client.read_flow_run(run_uuid)
        task_runs = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_uuid]))
        )
        events = await client.read_events(
            EventFilter(any_resource=EventAnyResourceFilter(id=[f"prefect.flow-run.{run_id}"])), limit=50
        )
    return {
        "prefect logs": "\n".join(log.message for log in logs),
        "prefect artifacts": "\n".join(a.model_dump_json() for a in artifacts),
        "prefect flow run": flow_run.model_dump_json(),
        "prefect task runs": "\n".join(t.model_dump_json() for t in task_runs),
        "prefect events": "\n".join(e.model_dump_json() for e in events.events),
        "_counts": json.dumps(
            {
                "logs": len(logs),
                "artifacts": sum(1 for a in artifacts if a.type != "result"),  # the node table, the summary
                "results": sum(1 for a in artifacts if a.type == "result"),  # one per completed node
                "task_runs": len(task_runs),
            }
        ),
    }
