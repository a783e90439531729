"""Pipeline-level notifications (`on_start`, `on_success`, `on_failure`) run as Prefect flow hooks.

Hooks run after Prefect has set the run's state, so a failed node, a flow that
raised, a cancelled run and a crash the engine saw all still tell someone. A run
whose process died cannot run its hooks: `pipeline serve` tells those
(`tell_crashed_run`), and one claim per run attempt in the incident store keeps the
two from both sending. Every entry is tried; each outcome is a line in the run's own
Prefect log. A hook that fails never changes the run's outcome, and it runs in a
thread, so a slow target never stalls the event loop other runs share.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Any

from flows.definition import load_definition
from flows.parameters import parameters_for
from flows.request import RunRequest
from nodes.base import NodeContext
from nodes.errors import OpsflowError, TemplateError
from nodes.runtime import execute_node
from nodes.templating import has_dynamic

__all__ = ["HOOKS", "notify_policy", "tell_crashed_run"]

log = logging.getLogger("opsflow.policies")

# the longest one pipeline-level notification may take
ENTRY_TIMEOUT_SECONDS = 30.0


def run_status(state: Any) -> str:
    """`run.status` for templates: completed, failed, crashed or cancelled."""
    name = state.type.value.lower() if state.type else str(state.name).lower()
    return "cancelled" if name == "cancelling" else name


def notify_policy(
    policy: str, flow_run: Any, state: Any, logger: Any = log, *, status: str | None = None
) -> int:
    """Send the definition's `policy` notifications for this run; returns how many were delivered.

    Every entry is attempted, whatever the one before did; each outcome is logged on `logger`.
    `status` overrides what `state` says (a cancelled run the engine saw crash).
    """
    request = RunRequest.from_parameters(flow_run.parameters)
    pipeline = load_definition(request.definition)
    configs = pipeline.definition.policies()[policy]
    if not configs:
        return 0
    run_id = str(flow_run.id)
    if policy == "on_failure" and not _claim_failure_notice(flow_run, logger):
        log.debug("on_failure of flow run %s already sent for this attempt", run_id)
        return 0
    ctx = _context(flow_run, state, request, pipeline)
    ctx.run.status = status or run_status(state)
    ctx.run.error = state.message if not state.is_completed() else None
    delivered = 0
    for index, config in enumerate(configs):
        name = f"{policy}[{index}]"
        defaults = {"title": f"{pipeline.name}: run {ctx.run.status}"}
        if ctx.run.error:
            defaults["message"] = f"{ctx.run.error}\nRun: {ctx.run.ui_url or run_id}"
        entry_ctx = dataclasses.replace(ctx, deadline=time.monotonic() + ENTRY_TIMEOUT_SECONDS)
        try:
            result = _send(f"{policy}-{index}", defaults, config, entry_ctx, logger, name)
        except OpsflowError as exc:
            logger.error("%s (%s) not delivered: %s", name, config.get("driver", "console"), exc)
            continue
        except Exception as exc:  # a driver bug must not keep the next entry from being tried
            logger.error("%s (%s) not delivered: %s: %s", name, config.get("driver"), type(exc).__name__, exc)
            continue
        delivered += 1
        drivers = ", ".join(d.get("driver", "?") for d in result["output"].get("deliveries", []))
        logger.info("%s delivered (%s)", name, drivers)
    return delivered


def _send(node_id: str, defaults: dict, config: dict, ctx: NodeContext, logger: Any, name: str) -> dict:
    """Deliver one entry. When its templates name what this run does not have (a node that
    never ran, an incident a crashed run never stored), it goes out with the default title
    and message instead: a failure nobody hears about is the worse outcome."""
    try:
        return execute_node(node_id, "notify", {**defaults, **config}, ctx)
    except TemplateError as exc:
        plain = {k: v for k, v in config.items() if not (isinstance(v, str) and has_dynamic(v))}
        if plain == config:
            raise
        logger.warning("%s: %s; sent with the default title and message", name, exc)
        return execute_node(node_id, "notify", {**defaults, **plain}, ctx)


def _context(flow_run: Any, state: Any, request: RunRequest, pipeline: Any) -> NodeContext:
    """The run as its hooks see it: its parameters, and the node outputs its final state carries.

    A finished run's state holds the flow's (redacted) Run result; a run whose process
    died holds none, and its hooks see the payload only.
    """
    from prefect.utilities.urls import url_for

    info = request.run_info(pipeline, run_id=str(flow_run.id), ui_url=url_for(flow_run))
    # a run that failed on its payload still gets its hooks: wrong values read as defaults
    params = parameters_for(pipeline, request.payload, strict=False)
    ctx = NodeContext(run=info, payload=request.payload, params=params)
    result = _result_of(state)
    for node_id, node in (result.get("node_results") or {}).items():
        failed = node.get("skipped") or (node.get("errors") and not node.get("output"))
        ctx.nodes[node_id] = None if failed else node.get("output")
        incident = (node.get("output") or {}).get("incident") if node.get("node_type") == "ingest" else None
        if isinstance(incident, dict):
            ctx.incident = incident
    return ctx


def _result_of(state: Any) -> dict[str, Any]:
    try:
        result = state.result(raise_on_failure=False, _sync=True)
    except Exception:  # nothing kept (a crashed process, a state read back from the API)
        return {}
    return result if isinstance(result, dict) else {}


def _claim_failure_notice(flow_run: Any, logger: Any) -> bool:
    """True for the first to tell this run attempt's failure: its hook, or `pipeline serve` after a crash."""
    from nodes.incidents import run_memory

    attempt = f"attempt-{getattr(flow_run, 'run_count', 0) or 1}"
    try:
        return run_memory.claim(str(flow_run.id), "on_failure", attempt)
    except Exception as exc:  # better told twice than never
        logger.warning("could not check whether this failure was already told (%s); telling it", exc)
        return True


def tell_crashed_run(flow_run: Any, logger: Any = log) -> int:
    """`on_failure` for a run marked Crashed by the heartbeat automation (its process is gone)."""
    return notify_policy("on_failure", flow_run, flow_run.state, logger)


async def _cancelled_or_none(flow_run: Any, state: Any) -> str | None:
    """`cancelled` when the run crashed because someone cancelled it.

    Cancelling a run (UI, `prefect flow-run cancel`, Ctrl-C) interrupts it, and the engine
    reports the interruption as a crash; the run's state history says it was asked to stop.
    """
    if not state.is_crashed():
        return None
    from prefect.client.orchestration import get_client

    try:
        async with get_client() as client:
            history = await client.read_flow_run_states(flow_run.id)
    except Exception:  # the crash is what is known then
        return None
    before = [s for s in sorted(history, key=lambda s: s.timestamp) if not s.is_crashed()]
    return "cancelled" if before and (before[-1].is_cancelling() or before[-1].is_cancelled()) else None


def _hook(policy: str):
    async def hook(flow: Any, flow_run: Any, state: Any) -> None:
        from prefect.logging.loggers import flow_run_logger

        logger = flow_run_logger(flow_run, flow)
        try:
            status = await _cancelled_or_none(flow_run, state)
            await asyncio.to_thread(notify_policy, policy, flow_run, state, logger, status=status)
        except Exception as exc:  # a broken notification must not change the run's outcome
            logger.error("%s notifications failed: %s", policy, exc)

    hook.__name__ = f"opsflow_{policy}"
    return hook


HOOKS = {
    "on_running": [_hook("on_start")],
    "on_completion": [_hook("on_success")],
    "on_failure": [_hook("on_failure")],
    "on_crashed": [_hook("on_failure")],
    "on_cancellation": [_hook("on_failure")],
}
