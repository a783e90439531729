"""The flow side of an `approval` node: pause the flow run until someone answers, then record it.

The Prefect UI shows the answer form (built from `nodes.approval.Answer`, with the node's
question as its description and as the paused run's state message); `pipeline approve
RUN_ID` answers from a terminal. Silence past the timeout is decided by the node's
`on_timeout`. The answer becomes the node's result in a task of its own (`approval`, named
after the node), so the node sits in the run graph, logs its decision and keeps it in
result storage: a flow run retried from the UI finds the decision there and does not ask again.
A flow run is paused once at a time, so approvals ready together ask one after the other;
nothing else in the run waits for them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from flows.node_task import PERSISTED, NodeCall, result_key
from flows.progress import emit
from nodes.approval import Answer, Config, outcome
from nodes.runtime import node_result, validate_config
from nodes.templating import resolve

if TYPE_CHECKING:  # prefect loads only when a run pauses or is answered
    from prefect.input import RunInput

__all__ = ["Approvals", "Asked", "answer_approval"]


@dataclasses.dataclass(frozen=True)
class Asked(NodeCall):
    """An approval node once asked: the answer (None: nobody answered in time) and the wait."""

    answer: dict[str, Any] | None = None
    waited_ms: float = 0.0

    def __repr__(self) -> str:
        return f"Asked({self.node_id})"


def approval_config(call: NodeCall) -> Config:
    """The node's config, templates resolved; a bad one raises the node's error."""
    # the registry's model for "approval" is nodes.approval.Config
    return cast(Config, validate_config("approval", resolve(call.config, call.ctx.for_node(call.node_id))))


def _record(node: Asked) -> dict[str, Any]:
    """The approval task: the decision as the node's result, logged on the run and kept."""
    from prefect import get_run_logger

    config = approval_config(node)  # an invalid config fails here, as the node's own failure
    answer = Answer.model_validate(node.answer) if node.answer is not None else None
    result = node_result(
        node.node_id,
        node.node_type,
        output=outcome(config, answer),
        duration_ms=node.waited_ms,
        attempts=1,
    )
    result = node.ctx.secrets.redact(result)
    get_run_logger().info("%s", result["summary"])
    return result


@lru_cache(maxsize=256)
def record_task(node_id: str):
    from prefect import task

    return task(name="approval", task_run_name=node_id, retries=0, log_prints=False, **PERSISTED)(_record)


def _run_input(question: str) -> type[RunInput]:
    from prefect.input import RunInput

    return RunInput.subclass_from_base_model_type(Answer).with_initial_data(description=question)


class Approvals:
    """The approval nodes of one flow run."""

    def __init__(self) -> None:
        self._pause = asyncio.Lock()  # Prefect pauses a flow run, once at a time

    async def decide(self, call: NodeCall, upstream: list[Any]) -> Any:
        """Ask (unless an earlier attempt of this flow run recorded the decision), then record.

        Returns the approval task's future, done. An invalid config asks nothing: the
        task fails with the config error, so `required` and `--continue-on-error` apply.
        """
        from prefect.utilities.annotations import quote

        started = time.perf_counter()
        answer: dict[str, Any] | None = None
        try:
            config: Config | None = approval_config(call)
        except Exception:  # reported by the approval task, which validates it again
            config = None
        if config is not None and not await _recorded(call):
            async with self._pause:
                answer = await _ask(call, config)
        asked = Asked(
            **{f.name: getattr(call, f.name) for f in dataclasses.fields(NodeCall)},
            answer=answer,
            waited_ms=(time.perf_counter() - started) * 1000,
        )
        future = record_task(call.node_id).submit(quote(asked), wait_for=upstream)
        await asyncio.wrap_future(future.wrapped_future)
        return future


def _flow_run() -> Any:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise RuntimeError("an approval node needs a flow run to pause")
    return context.flow_run


async def _recorded(call: NodeCall) -> bool:
    """Whether an earlier attempt of this flow run already recorded this node's decision."""
    from prefect.results import get_result_store

    store = await get_result_store().aupdate_for_task(record_task(call.node_id))
    return await store.aexists(result_key(str(_flow_run().id), call.node_id, call.digest()))


async def _ask(call: NodeCall, config: Config) -> dict[str, Any] | None:
    """Pause the flow run with the question until answered; None when the time ran out."""
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client
    from prefect.input.run_input import keyset_from_paused_state
    from prefect.states import Paused, State
    from prefect.utilities.engine import propose_state

    flow_run = _flow_run()
    log = get_run_logger()
    log.info(
        "node %r waits for approval: %s (answer in the UI or with: pipeline approve %s [--reject])",
        call.node_id,
        config.message,
        flow_run.id,
    )
    emit(
        {
            "state": "waiting",
            "reason": "approval",
            "node_id": call.node_id,
            "node_type": call.node_type,
            "run_id": str(flow_run.id),
            "message": config.message,
        }
    )
    form = _run_input(config.message)
    # a retried flow run cannot pause again under a key it already used
    for key in (call.node_id, f"{call.node_id}@{flow_run.run_count}"):
        paused: State[Any] = Paused(
            timeout_seconds=config.timeout_seconds, reschedule=False, pause_key=key, message=config.message
        )
        keyset = keyset_from_paused_state(paused)
        paused.state_details.run_input_keyset = {str(k): v for k, v in keyset.items()}
        async with get_client() as client:
            state = await propose_state(client=client, state=paused, flow_run_id=flow_run.id)
            if state.is_running():  # answered in an earlier attempt of this flow run
                try:
                    return (await form.aload(keyset)).model_dump()
                except Exception:  # that pause got no answer: ask again under a new key
                    continue
            if not state.is_paused():
                raise RuntimeError(f"flow run cannot be paused for approval (it is {state.name})")
            await form.asave(keyset)
            if await _resumed(client, flow_run.id, config):
                return (await form.aload(keyset)).model_dump()
            waited = config.timeout_seconds
            log.info("node %r: no answer in %s s: %s", call.node_id, waited, config.on_timeout)
            return None
    raise RuntimeError(f"node {call.node_id!r}: the flow run cannot pause again for this approval")


async def _resumed(client, flow_run_id: UUID, config: Config) -> bool:
    """Poll until the run is resumed (True) or the timeout passes (False, and the run goes on)."""
    from prefect.states import Running

    deadline = time.monotonic() + config.timeout_seconds
    while True:
        await asyncio.sleep(max(0.0, min(config.poll_seconds, deadline - time.monotonic())))
        flow_run = await client.read_flow_run(flow_run_id)
        if flow_run.state is not None and flow_run.state.is_running():
            return True
        if time.monotonic() >= deadline:
            await client.set_flow_run_state(flow_run_id, Running(), force=True)
            return False


def answer_approval(run_id: str, *, approve: bool, comment: str = "", by: str = "") -> str:
    """Resume a paused run with an answer (what `pipeline approve` does); returns its id.

    `run_id` may also be a unique id prefix or the run's name.
    """
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
