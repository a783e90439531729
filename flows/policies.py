"""Pipeline-level notifications (`on_start`, `on_success`, `on_failure`) run as Prefect flow hooks.

Hooks run after Prefect has set the run's state, so a failed node, a flow that
raised, and a crash (e.g. a killed or cancelled run the engine saw) all still tell
someone. A hook that fails logs why and never changes the run's outcome.
"""

from __future__ import annotations

import logging
from typing import Any

from flows.definition import load_definition
from nodes.base import NodeContext, RunInfo
from nodes.runtime import execute_node

__all__ = ["HOOKS", "forget", "remember"]

log = logging.getLogger("opsflow.policies")

# the live context of each running flow run, so hooks can template over node outputs
_CONTEXTS: dict[str, NodeContext] = {}


def remember(ctx: NodeContext) -> None:
    if ctx.run.run_id:
        _CONTEXTS[ctx.run.run_id] = ctx


def forget(run_id: str | None) -> None:
    _CONTEXTS.pop(run_id or "", None)


def notify_policy(policy: str, flow_run: Any, state: Any) -> int:
    """Send the definition's `policy` notifications for this run; returns how many were sent."""
    params = flow_run.parameters or {}
    pipeline = load_definition(params["definition"])
    configs = pipeline.definition.policies()[policy]
    if not configs:
        return 0
    run_id = str(flow_run.id)
    ctx = _CONTEXTS.get(run_id) or NodeContext(
        run=RunInfo(
            trace_id=params.get("trace_id") or run_id.replace("-", ""),
            run_id=run_id,
            definition=pipeline.name,
            definition_version=pipeline.definition_version,
            source=params.get("source") or "api",
            environment=params.get("environment") or "development",
        ),
        payload=params.get("payload") or {},
    )
    ctx.run.status = state.name
    ctx.run.error = state.message if not state.is_completed() else None
    sent = 0
    for index, config in enumerate(configs):
        defaults = {"title": f"{pipeline.name}: run {state.name.lower()}"}
        if ctx.run.error:
            defaults["message"] = f"{ctx.run.error}\nRun: {ctx.run.ui_url or run_id}"
        execute_node(f"{policy}-{index}", "notify", {**defaults, **config}, ctx)
        sent += 1
    return sent


def _hook(policy: str, *, final: bool):
    def hook(flow: Any, flow_run: Any, state: Any) -> None:
        try:
            notify_policy(policy, flow_run, state)
        except Exception as exc:  # a broken notification must not change the run's outcome
            log.error("%s notification of flow run %s failed: %s", policy, flow_run.id, exc)
        finally:
            if final:
                forget(str(flow_run.id))

    hook.__name__ = f"opsflow_{policy}"
    return hook


HOOKS = {
    "on_running": [_hook("on_start", final=False)],
    "on_completion": [_hook("on_success", final=True)],
    "on_failure": [_hook("on_failure", final=True)],
    "on_crashed": [_hook("on_failure", final=True)],
}
