"""The flow side of an `approval` node: pause the flow run until someone answers.

The Prefect UI shows the answer form (built from `nodes.approval.Answer`);
`pipeline approve RUN_ID` answers from a terminal. Silence past the timeout is
decided by the node's `on_timeout`, and the run goes on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from flows.definition import Node
from flows.progress import emit
from nodes.approval import Answer, Config, outcome
from nodes.base import NodeContext
from nodes.runtime import node_result, validate_config
from nodes.templating import resolve

if TYPE_CHECKING:  # prefect loads only when a run pauses or is answered
    from prefect.input import RunInput

__all__ = ["answer_approval", "wait_for_approval"]


def _run_input() -> type[RunInput]:
    from prefect.input import RunInput

    return RunInput.subclass_from_base_model_type(Answer)


async def wait_for_approval(node: Node, ctx: NodeContext) -> dict[str, Any]:
    """Pause until answered or timed out; the node result carries the decision."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.exceptions import FlowPauseTimeout
    from prefect.flow_runs import apause_flow_run
    from prefect.states import Running

    started = time.perf_counter()
    node_ctx = ctx.for_node(node.id)
    # the registry's model for "approval" is nodes.approval.Config
    config = cast(Config, validate_config("approval", resolve(node.config, node_ctx)))
    get_run_logger().info(
        "node %r waits for approval (%s); answer in the UI or with: pipeline approve %s [--reject]",
        node.id,
        config.message,
        ctx.run.run_id,
    )
    emit(
        {
            "state": "waiting",
            "reason": "approval",
            "node_id": node.id,
            "node_type": node.type,
            "run_id": ctx.run.run_id,
            "message": config.message,
        }
    )
    answer: RunInput | None
    try:
        answer = await apause_flow_run(
            wait_for_input=_run_input(),
            timeout=config.timeout_seconds,
            poll_interval=max(1, int(config.poll_seconds)),
            key=node.id,
        )
    except FlowPauseTimeout:
        answer = None
        async with get_client() as client:  # the run is still Paused in the API: resume it
            await client.set_flow_run_state(UUID(ctx.run.run_id), Running(), force=True)
    output = outcome(config, Answer.model_validate(answer.model_dump()) if answer is not None else None)
    result = ctx.secrets.redact(
        node_result(
            node.id, node.type, output=output, duration_ms=(time.perf_counter() - started) * 1000, attempts=1
        )
    )
    get_run_logger().info("node %r: %s", node.id, result["summary"])
    return result


def answer_approval(run_id: str, *, approve: bool, comment: str = "", by: str = "") -> str:
    """Resume a paused run with an answer (what `pipeline approve` does); returns its id.

    `run_id` may also be a unique id prefix or the run's name.
    """
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.exceptions import NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    from flows.history import resolve_run
    from nodes.errors import UsageError

    async def find():
        async with get_client() as client:
            return await resolve_run(client, run_id)

    flow_run = asyncio.run(find())
    try:
        resume_flow_run(flow_run.id, run_input={"approve": approve, "comment": comment, "by": by})
    except ObjectNotFound:
        raise UsageError(f"Flow run not found: {run_id}") from None
    except NotPausedError:
        state = flow_run.state.name if flow_run.state else "unknown"
        raise UsageError(f"Flow run {run_id} is not waiting for an approval (it is {state})") from None
    except RuntimeError as exc:
        raise UsageError(f"Flow run {run_id} cannot be resumed: {exc}") from None
    return str(flow_run.id)
