"""Text for people: dry-run, describe, the result of a run, and the flow-run artifacts.

Nothing here runs a node or imports Prefect; `${...}` references always show as ***.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from flows.command_report import (
    artifact_facts,
    artifacts_of,
    cpu_text,
    exit_code_of,
    measured,
    resources,
    result_lines,
    rss_text,
)
from flows.definition import Pipeline
from flows.parameters import parameter_lines
from flows.triggers import trigger_lines
from nodes.templating import mask_references

RULE = "=" * 60
STATUS_LINE = {
    "completed": "✓ Pipeline completed successfully",
    "partial": "⚠ Pipeline completed with errors (status: partial)",
    "failed": "✗ Pipeline failed",
}


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def shown_config(node_type: str, config: dict[str, Any], *, references: bool = False) -> Any:
    """A node's config as shown to people: keys typed in as text masked, and `${...}`
    references too unless `references` (they name a secret; they do not hold it)."""
    from nodes.base import Secrets, typed_in_secrets
    from nodes.errors import OpsflowError
    from nodes.runtime import validate_config

    shown = config if references else mask_references(config)
    try:
        typed = typed_in_secrets(validate_config(node_type, config))
    except OpsflowError:  # an invalid config is reported by validation, with its fields named
        return shown
    typed = {value for value in typed if "${" not in value}
    return Secrets(typed).redact(shown) if typed else shown


def describe_lines(
    pipeline: Pipeline, *, skipped: dict[str, str] | None = None, header: list[str] | None = None
) -> list[str]:
    """The node list shared by `describe` and dry-run (`header` replaces the first lines)."""
    lines = header or [
        f"Pipeline: {pipeline.name} ({pipeline.definition_version})",
        f"Source: {pipeline.source}",
    ]
    if pipeline.description:
        lines.append(f"Description: {pipeline.description}")
    lines += parameter_lines(pipeline.definition.parameters) + trigger_lines(pipeline.definition.triggers)
    lines.append(f"Nodes ({len(pipeline.nodes)}):")
    for index, node in enumerate(pipeline.definition.nodes, start=1):
        flags = [] if node.required else ["optional"]
        options = pipeline.options(node)
        if options["retries"]:
            flags.append(f"retries {options['retries']}")
        lines.append(f"  {index}. [{node.type}] {node.id}")
        if flags:
            lines.append(f"     ({', '.join(flags)})")
        if node.description:
            lines.append(f"     {node.description}")
        lines.append(f"     Config: {_short(shown_config(node.type, node.config), 200)}")
        if node.when:
            lines.append(f"     when: {node.when}")
        if node.skip_if_errors:
            lines.append(f"     skip_if_errors: {', '.join(node.skip_if_errors)}")
        if node.on_failure:
            lines.append(f"     on_failure (compensation): {', '.join(node.on_failure)}")
        if skipped and node.id in skipped:
            lines.append(f"     skipped: {skipped[node.id]}")
        if node.id in pipeline.compensations:
            lines.append(f"     → runs only in a rollback (undoes {pipeline.compensations[node.id]})")
        else:
            targets = pipeline.successors[node.id]
            lines.append(f"     → next: {', '.join(targets)}" if targets else "     → end")
    names = pipeline.settings
    if names:
        lines.append("Settings:")
        for name in names:
            state = (
                "secret block"
                if name.startswith("secret:")
                else ("set" if os.environ.get(name) else "NOT SET")
            )
            lines.append(f"  {name}: {state}")
    return lines


def dry_run_text(
    pipeline: Pipeline,
    *,
    config_path: str | None = None,
    source: str = "cli",
    environment: str = "development",
    payload: dict[str, Any] | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    previews: dict[str, list[dict]] | None = None,
) -> str:
    """What `pipeline run --dry-run` prints: the plan (the seeds' layout), and no node run."""
    skipped = {}
    for node_id in pipeline.nodes:
        if only and node_id not in only:
            skipped[node_id] = "not in --only"
        elif skip and node_id in skip:
            skipped[node_id] = "in --skip"
    header = [
        f"Pipeline Config: {config_path}" if config_path else f"Pipeline Definition: {pipeline.name}",
        f"Version: {pipeline.definition_version}",
        f"Source: {source}",
        f"Environment: {environment}",
    ]
    lines = ["=== DRY RUN ===", *describe_lines(pipeline, skipped=skipped, header=header)]
    for node_id, requests in (previews or {}).items():
        lines.append(f"Would send ({node_id}):")
        for request in requests:
            lines.append(f"  {_short(request, 400)}")
    lines += ["Payload:", json.dumps(payload or {}, indent=2, ensure_ascii=False, default=str)]
    lines += ["", "Use without --dry-run to execute"]
    return "\n".join(lines)


def _seed_lines(node_type: str, output: dict[str, Any]) -> list[str]:
    """The seeds' lines for a node type's output (DESIGN.md "CLI": result)."""
    if node_type == "context":
        groups = [key for key, value in output.items() if isinstance(value, dict)]
        return [f"  Checks run: {len(groups)}" + (f" ({', '.join(groups)})" if groups else "")]
    if node_type == "intelligence":
        summary = str(output.get("summary") or "")
        summary = summary if len(summary) <= 100 else summary[:99] + "…"
        provider = output.get("provider") or "-"
        model = f" ({output['model']})" if output.get("model") else ""
        return [f"  Summary: {summary}", f"  Provider: {provider}{model}"]
    if node_type == "notify":
        deliveries = output.get("deliveries") or []
        drivers = list(dict.fromkeys(str(d.get("driver")) for d in deliveries if d.get("driver")))
        return [
            f"  Driver: {', '.join(drivers) or '-'}",
            f"  Channels attempted: {output.get('channels_attempted', 0)}",
            f"  Succeeded: {output.get('channels_succeeded', 0)}",
        ]
    if node_type == "ingest":
        return [
            f"  Incident ID: {output.get('incident_id') if output.get('incident_id') is not None else '-'}",
            f"  Alerts created: {output.get('alerts_created', 0)}",
        ]
    if node_type == "approval":
        lines = [
            f"  Question: {_short(output.get('message') or '-')}",
            f"  Decision: {output.get('decision')} by {output.get('by') or 'unknown'}"
            + (" (nobody answered in time)" if output.get("timed_out") else ""),
        ]
        return lines + ([f"  Comment: {_short(output['comment'])}"] if output.get("comment") else [])
    if node_type == "command" and "exit_code" in output:
        return result_lines(output)
    return [f"  {key}: {_short(value)}" for key, value in output.items()]


def node_block(
    node_id: str,
    node_type: str,
    node: dict[str, Any] | None,
    node_lines: Callable[[str, dict[str, Any]], list[str]] | None = None,
) -> list[str]:
    """One node of a result: `--- type (id) ---` and the seeds' lines for its type."""
    lines = [f"--- {node_type} ({node_id}) ---"]
    if node is None:
        return [*lines, "  (not executed)"]
    if node["skipped"]:
        return [*lines, f"  (skipped) {node.get('skip_reason') or ''}".rstrip()]
    if node.get("output"):
        lines += _seed_lines(node_type, node["output"])
    if node.get("summary") and not node["errors"]:  # a failed node's line is its error
        lines.append(f"  {_short(node['summary'])}")
    if node["errors"]:
        lines.append("  Errors: " + "; ".join(str(error.get("message")) for error in node["errors"]))
    if node_lines is not None:
        lines += node_lines(node_id, node)
    attempts = node.get("attempts") or 1
    lines.append(
        f"  Duration: {duration_text(node['duration_ms'])} ({attempts} attempt{'s' if attempts > 1 else ''})"
    )
    return lines


def result_text(
    result: dict[str, Any],
    *,
    config_path: str | None = None,
    nodes: dict[str, str] | None = None,
    header: list[str] | None = None,
    node_lines: Callable[[str, dict[str, Any]], list[str]] | None = None,
    extra: list[str] | None = None,
    unknown_status: str | None = None,
    error_on_status_line: bool = True,
) -> str:
    """The seeds' result layout for a finished run.

    `error_on_status_line=False` ends a failed run with `✗ Pipeline failed` alone, for
    `pipeline run`, which says `Pipeline failed: ...` on stderr (once, not twice).

    `nodes` (id → type, definition order) adds `(not executed)` for nodes never reached.
    `pipeline show` adds what Prefect recorded: `header` lines, `node_lines` per node,
    `extra` lines at the end, and a status line for a run that never finished.
    """
    lines = [
        RULE,
        "PIPELINE RESULT",
        RULE,
        f"Status: {result['status']}",
        f"Config: {config_path}" if config_path else f"Definition: {result['definition']}",
        f"Trace ID: {result['trace_id']}",
        f"Run ID: {result['run_id']}",
        f"Duration: {duration_text(result['duration_ms'])}",
        f"Version: {result['definition_version']}",
        *(header or []),
    ]
    if result.get("incident_id"):
        lines.append(f"Incident: {result['incident_id']}")
    order = list(nodes or {}) or list(result["node_results"])
    order += [n for n in result["node_results"] if n not in order]
    for node_id in order:
        node = result["node_results"].get(node_id)
        node_type = node["node_type"] if node else (nodes or {}).get(node_id, "?")
        lines += ["", *node_block(node_id, node_type, node, node_lines)]
    lines += extra or []
    lines.append("")
    status_line = STATUS_LINE.get(result["status"], unknown_status or result["status"])
    if result["status"] == "failed" and result.get("error") and error_on_status_line:
        status_line += f": {result['error']}"
    lines.append(status_line)
    return "\n".join(lines)


# a node's output shown on its task run's page is cut here (the stored result keeps it whole)
MAX_SHOWN_OUTPUT = 8 * 1024


def result_markdown(result: dict[str, Any]) -> str:
    """A node's result on its task run's page in the UI ("Result"): its line, then its output."""
    text = json.dumps(result.get("output"), indent=1, default=str, ensure_ascii=False)
    if len(text) > MAX_SHOWN_OUTPUT:
        text = text[:MAX_SHOWN_OUTPUT] + "\n… (cut here: `pipeline show RUN --json` has all of it)"
    return f"{result.get('summary') or ''}\n\n```json\n{text}\n```"


def rejections(result: dict[str, Any]) -> list[str]:
    """`approval 'ask' rejected by alice: not now`, for each approval node that said no."""
    lines = []
    for node_id, node in result["node_results"].items():
        output = node.get("output") if node.get("node_type") == "approval" else None
        if isinstance(output, dict) and output.get("decision") == "rejected":
            line = f"approval {node_id!r} rejected by {output.get('by') or 'unknown'}"
            lines.append(line + (f": {output['comment']}" if output.get("comment") else ""))
    return lines


def state_message(result: dict[str, Any]) -> str:
    """The flow run's final state message: its status (or error) and who rejected what."""
    status = result["status"]
    message = f"Pipeline failed: {result['error']}" if status == "failed" else f"Pipeline {status}"
    rejected = rejections(result)
    return message + (f" ({'; '.join(rejected)})" if rejected else "")


def duration_text(ms: Any) -> str:
    """`35 ms` under a second, `1.2 s` from there: what a person reads at a glance."""
    if not isinstance(ms, int | float):
        return ""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def artifact_rows(pipeline: Pipeline, result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per node for the flow run's table artifact.

    A retried node's duration is its last attempt's, followed by the total time it took
    over every attempt and retry wait. A definition with `command` nodes has two more
    columns, `cpu` and `peak_rss` of each stage's process tree (empty for other nodes).
    """
    commands = any(node.type == "command" for node in pipeline.definition.nodes)
    rows = []
    for node in pipeline.definition.nodes:
        node_result = result["node_results"].get(node.id)
        summary = skip_reason = error = duration = ""
        attempts: int | str = ""
        if node_result is None:
            status = "not run"
        elif node_result["skipped"]:
            status, skip_reason = "skipped", node_result["skip_reason"] or ""
        else:
            failed = bool(node_result["errors"])
            status = "failed" if failed else "completed"
            summary = "" if failed else node_result.get("summary") or ""
            error = node_result["errors"][0]["message"] if failed else ""
            attempts = node_result.get("attempts") or 1
            duration = duration_text(node_result["duration_ms"])
            if attempts > 1 and isinstance(node_result.get("total_ms"), int | float):
                duration += f" ({duration_text(node_result['total_ms'])} in all)"
        usage = (node_result or {}).get("output", {}).get("usage") if node_result else None
        tokens: int | str = ""
        if isinstance(usage, dict):
            tokens = (usage.get("input_tokens") or 0) + (usage.get("output_tokens") or 0)
        row: dict[str, Any] = {
            "node": node.id,
            "type": node.type,
            "status": status,
            "summary": summary,
            "duration": duration,
            "attempts": attempts,
        }
        if commands:
            cpu, rss = resources(node_result) if node.type == "command" else (None, None)
            row.update(cpu=cpu_text(cpu), peak_rss=rss_text(rss))
        rows.append({**row, "tokens": tokens, "skip_reason": skip_reason, "error": error})
    return rows


def artifact_markdown(pipeline: Pipeline, result: dict[str, Any]) -> str:
    """A short summary of the run for the flow run's markdown artifact."""
    lines = [
        f"# {pipeline.name}: {result['status']}",
        "",
        f"- definition version: `{result['definition_version']}`",
        f"- definition source: `{result.get('definition_source') or 'unknown'}`",
        f"- trace id: `{result['trace_id']}`",
        f"- duration: {result['duration_ms']:.1f} ms",
        f"- executed: {', '.join(result['executed_nodes']) or 'none'}",
    ]
    if result.get("incident_id"):
        lines.append(f"- incident: `{result['incident_id']}`")
    for node_id in result["skipped_nodes"]:
        lines.append(f"- skipped `{node_id}`: {result['node_results'][node_id]['skip_reason']}")
    lines += headline(result)
    lines += command_stages(pipeline, result)
    if result.get("error"):
        lines += ["", f"**Error:** {result['error']}"]
    return "\n".join(lines)


def command_stages(pipeline: Pipeline, result: dict[str, Any]) -> list[str]:
    """The summary's execution report: each `command` stage that ran, how it ended, its CPU and
    peak RSS, and its artifacts (path, valid, bytes, sha256)."""
    lines = []
    for node in pipeline.definition.nodes:
        done = result["node_results"].get(node.id)
        if node.type != "command" or done is None or done["skipped"]:
            continue
        code = exit_code_of(done)
        facts = "failed" if done["errors"] else "completed"
        facts += f", exit code {code}" if code is not None else ""
        facts += f" in {duration_text(done['duration_ms'])}" if done.get("duration_ms") else ""
        used = measured(done)
        lines.append(f"- `{node.id}`: {facts}" + (f"; {used}" if used else ""))
        lines += [f"  - artifact `{a.get('path')}`: {artifact_facts(a, '`')}" for a in artifacts_of(done)]
    return ["", "## Command stages", "", *lines] if lines else []


def headline(result: dict[str, Any]) -> list[str]:
    """The story of the run for the summary artifact: the alerts, then each node's line."""
    lines = []
    for node in result["node_results"].values():
        incident = (node.get("output") or {}).get("incident") if node["node_type"] == "ingest" else None
        if isinstance(incident, dict) and incident.get("alerts"):
            names = list(dict.fromkeys(str(a.get("title")) for a in incident["alerts"] if a.get("title")))
            lines.append(f"- alerts: {_short(', '.join(names), 200)}")
    ran = [(i, n) for i, n in result["node_results"].items() if not n["skipped"] and n.get("summary")]
    if ran:
        lines += ["", "## What each node did", ""]
        lines += [f"- `{node_id}`: {_short(node['summary'], 240)}" for node_id, node in ran]
    return lines
