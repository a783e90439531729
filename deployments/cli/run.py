"""`pipeline run` (a definition as a flow run here, or its plan with --dry-run) and `pipeline run-stage`."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from deployments.cli.common import (
    DEFAULT_ALERT_PIPELINE,
    Exit,
    LogLevel,
    ids,
    load_or_exit,
    payload_from,
    verbose_requested,
)
from flows.definition import Pipeline
from flows.parameters import parameters_for

__all__ = ["run", "run_stage_command"]


def run(
    definition: Annotated[str | None, typer.Option("--definition", "-d", help="Definition name.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path of a definition file.")] = None,
    payload: Annotated[str | None, typer.Option(help="Alert payload as JSON text.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Alert payload JSON file.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use a sample Alertmanager payload.")] = False,
    source: Annotated[str, typer.Option(help="Where the run came from.")] = "cli",
    environment: Annotated[str, typer.Option(help="Environment name passed to the run.")] = "development",
    trace_id: Annotated[str | None, typer.Option(help="Trace id (default: the flow run id).")] = None,
    only: Annotated[str | None, typer.Option(help="Comma-separated node ids: run only these.")] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated node ids to skip.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run result as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines.")] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option("--log-level", help="Log lines shown while the run goes (default: warnings and up)."),
    ] = None,
    continue_on_error: Annotated[
        bool,
        typer.Option("--continue-on-error", help="Run the other nodes after a failure (status partial)."),
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file", help="Settings for this run from a dotenv file (wins over the environment)."
        ),
    ] = None,
) -> None:
    """Run a pipeline definition as a Prefect flow run (or show its plan with --dry-run)."""
    if env_file is not None:  # first: the file may set OPSFLOW_DEFINITIONS_DIR or PREFECT_API_URL
        from deployments.cli.envfile import load_env_file
        from nodes.errors import OpsflowError

        try:
            names = load_env_file(env_file)
        except OpsflowError as exc:
            raise Exit(str(exc)) from None
        typer.echo(f"Loaded {len(names)} setting(s) from {env_file}: {', '.join(names) or '-'}", err=True)
    if log_level is not None:  # before Prefect is imported, which reads it once
        level = {"warn": "WARNING"}.get(log_level.value, log_level.value.upper())
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = level
        if level == "DEBUG":
            os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"
    if definition and config:
        raise Exit("Cannot specify both --definition and --config")
    if not definition and not config:
        if not sample:
            raise Exit("Specify --definition NAME or --config PATH (or --sample for the alert pipeline)")
        definition = DEFAULT_ALERT_PIPELINE
    pipeline = load_or_exit(definition or str(config))
    data = payload_from(payload, file, sample)
    parameters_for(pipeline, data)  # a payload that does not fit: every problem named, exit 2
    only_ids, skip_ids = ids(only), ids(skip)
    both = [i for i in only_ids or [] if i in (skip_ids or [])]
    if both:
        raise Exit(f"Node id(s) in both --only and --skip: {', '.join(both)}")
    unknown = [i for i in [*(only_ids or []), *(skip_ids or [])] if i not in pipeline.nodes]
    if unknown:
        raise Exit(f"Unknown node id(s): {', '.join(unknown)} (nodes: {', '.join(pipeline.nodes)})")
    if dry_run:
        from flows.render import dry_run_text

        text = dry_run_text(
            pipeline,
            config_path=str(config) if config else None,
            source=source,
            environment=environment,
            payload=data,
            only=only_ids,
            skip=skip_ids,
            previews=_previews(pipeline, data),
        )
        typer.echo(text)
        return
    from deployments.cli.local_run import run_from_cli
    from flows.request import RunRequest

    request = RunRequest(
        definition=str(config.resolve()) if config else pipeline.name,
        payload=data,
        source=source,
        environment=environment,
        trace_id=trace_id,
        only=only_ids,
        skip=skip_ids,
        continue_on_error=continue_on_error,
    )
    result = run_from_cli(
        pipeline,
        request,
        config_path=str(config) if config else None,
        as_json=as_json,
        verbose=verbose or verbose_requested() or (log_level is not None and log_level.value == "debug"),
    )
    if result["status"] == "failed":
        raise Exit(f"Pipeline failed: {result['error']}", code=1)


def _previews(pipeline: Pipeline, payload: dict[str, Any]) -> dict[str, list[dict]]:
    """What each notify node would send, from modules that can say so (nothing is sent)."""
    from nodes import get_node_type
    from nodes.base import NodeContext, RunInfo
    from nodes.protocols import preview_of

    previews: dict[str, list[dict]] = {}
    ctx = NodeContext(
        run=RunInfo(trace_id="dry-run", definition=pipeline.name, definition_dir=pipeline.directory),
        payload=payload,
        params=parameters_for(pipeline, payload, strict=False),
        dry_run=True,
    )
    for node in pipeline.definition.nodes:
        preview = preview_of(get_node_type(node.type))
        if preview is not None:
            try:
                previews[node.id] = preview(node.config, ctx.for_node(node.id))
            except Exception as exc:  # a preview is a courtesy; the plan still prints
                previews[node.id] = [{"error": f"{type(exc).__name__}: {exc}"}]
    return previews


def run_stage_command(
    node_id: Annotated[str, typer.Argument(help="The node to run.")],
    definition: Annotated[str | None, typer.Option("--definition", "-d", help="Definition name.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path of a definition file.")] = None,
    from_run: Annotated[
        str | None,
        typer.Option(help="Take the payload and upstream outputs (redacted) from this past run."),
    ] = None,
    payload: Annotated[str | None, typer.Option(help="Alert payload as JSON text.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Alert payload JSON file.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use a sample Alertmanager payload.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the node result as JSON.")] = False,
) -> None:
    """Run one node here, for debugging: no flow run, no retries; upstream outputs from --from-run."""
    from flows.render import node_block
    from flows.stage import past_run, run_stage

    if definition and config:
        raise Exit("Cannot specify both --definition and --config")
    if not definition and not config:
        raise Exit("Specify --definition NAME or --config PATH")
    pipeline = load_or_exit(definition or str(config))
    if node_id not in pipeline.nodes:
        raise Exit(f"Unknown node id: {node_id} (nodes: {', '.join(pipeline.nodes)})")
    data = payload_from(payload, file, sample)
    outputs: dict = {}
    if from_run:
        import asyncio

        from flows.prefect_api import with_api

        past_payload, outputs = with_api(lambda: asyncio.run(past_run(from_run)))
        if not (payload or file or sample):
            data = past_payload
    missing = sorted(pipeline.ancestors(node_id) - set(outputs))
    if missing:
        typer.echo(f"note: no output of upstream node(s) {', '.join(missing)}", err=True)
    result = run_stage(pipeline, node_id, data, outputs)
    if as_json:
        typer.echo(json.dumps(result, indent=2, default=str))
        return
    typer.echo("\n".join(node_block(node_id, result["node_type"], result)))
    typer.echo("Output:")
    typer.echo(json.dumps(result["output"], indent=2, default=str, ensure_ascii=False))
