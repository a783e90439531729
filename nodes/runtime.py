"""Run one node: resolve its config, validate it, call the handler, shape the result.

This is the whole life of a node that does not depend on Prefect; `flows.pipeline`
wraps it in a task. Unit tests call it (or the handlers) directly.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import BaseModel, ValidationError

from nodes import get_node_type
from nodes.base import NodeContext
from nodes.errors import ConfigError, NodeError
from nodes.protocols import config_resolver
from nodes.summaries import failure_summary, summarize

__all__ = ["execute_node", "format_validation_error", "node_result", "validate_config"]


def node_result(
    node_id: str,
    node_type: str,
    *,
    output: Any = None,
    errors: list[dict] | None = None,
    duration_ms: float = 0.0,
    skipped: bool = False,
    skip_reason: str | None = None,
    attempts: int = 0,
    summary: str | None = None,
) -> dict[str, Any]:
    """The result every node produces, run, failed or skipped (DESIGN.md).

    `summary` defaults to the skip reason, the first error's first line, or the
    node type's own line for its output (`nodes.summaries`).
    """
    if summary is None:
        if skipped:
            summary = f"skipped: {skip_reason}" if skip_reason else "skipped"
        elif errors:
            summary = failure_summary(errors[0].get("message") or "failed")
        else:
            summary = summarize(node_type, output if output is not None else {})
    return {
        "node_id": node_id,
        "node_type": node_type,
        "output": output if output is not None else {},
        "summary": summary,
        "errors": errors or [],
        "duration_ms": round(duration_ms, 2),
        "skipped": skipped,
        "skip_reason": skip_reason,
        "attempts": attempts,
    }


def format_validation_error(exc: ValidationError, prefix: str = "config") -> list[str]:
    """One line per pydantic error: `config.checks[0].warning: Input should be a valid number`."""
    lines = []
    for err in exc.errors(include_url=False):
        path = prefix
        for part in err["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        lines.append(f"{path}: {err['msg']}")
    return lines


def validate_config(node_type: str, config: dict[str, Any]) -> BaseModel:
    """Validate `config` with the node type's own model; raise ConfigError naming each field."""
    module = get_node_type(node_type)
    try:
        return module.Config.model_validate(config)
    except ValidationError as exc:
        raise ConfigError("; ".join(format_validation_error(exc))) from exc


def execute_node(
    node_id: str,
    node_type: str,
    config: dict[str, Any],
    ctx: NodeContext,
    *,
    dynamic: bool = True,
) -> dict[str, Any]:
    """Run one node and return its result; raise NodeError (secrets scrubbed) on failure.

    `dynamic=False` (known at load time) skips template and reference resolution.
    Errors that are not NodeErrors are wrapped as retryable: an unexpected OSError or
    timeout may well pass on the next try, and the node's retry budget bounds it.
    """
    node_ctx = ctx.for_node(node_id)
    started = time.perf_counter()
    try:
        module = get_node_type(node_type)
        # a node type may keep some templates for itself (the webhook body renders with `message`)
        resolved = config_resolver(module)(config, node_ctx) if dynamic else config
        output = module.run(validate_config(node_type, resolved), node_ctx)
    except NodeError as exc:
        prefix = f"node {node_id!r}"
        # a template error already names the node (and the field): say it once
        message = exc.message if exc.message.startswith(f"{prefix} ") else f"{prefix}: {exc.message}"
        exc.message = ctx.secrets.redact(message)
        exc.args = (exc.message,)
        exc.duration_ms = (time.perf_counter() - started) * 1000
        _drop_cause_with_secrets(exc, ctx)
        raise
    except Exception as exc:
        message = ctx.secrets.redact(f"node {node_id!r}: {type(exc).__name__}: {exc}")
        error = NodeError(message, retryable=True)
        error.unexpected = True  # a bug, not an expected failure: its log keeps the traceback
        error.duration_ms = (time.perf_counter() - started) * 1000
        error.__cause__ = exc
        _drop_cause_with_secrets(error, ctx)
        raise error from error.__cause__
    output = ctx.secrets.redact(output)
    return node_result(
        node_id,
        node_type,
        output=output,
        duration_ms=(time.perf_counter() - started) * 1000,
        summary=ctx.secrets.redact(summarize(node_type, output)),
    )


def _drop_cause_with_secrets(exc: BaseException, ctx: NodeContext) -> None:
    """Cut the cause chain when any link would print a secret (Prefect logs tracebacks)."""
    if not len(ctx.secrets):
        return
    link = exc.__cause__ or exc.__context__
    while link is not None:
        if ctx.secrets.redact(str(link)) != str(link):
            exc.__cause__ = None
            exc.__context__ = None
            exc.__suppress_context__ = True
            return
        link = link.__cause__ or link.__context__
