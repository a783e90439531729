"""One node as a Prefect task: its retries, its timeout, its persisted result, and its thread.

Prefect retries a node only when its NodeError says a second try may pass, and waits
out a server's Retry-After; the node's timeout is enforced here, on the task's own
event loop, because Prefect's costs ~100 ms per task run.

Each completed node's result (already redacted) is persisted in Prefect's result storage
(JSON) under a key made of the flow run id, the node id and a digest of the node's config:
the UI's task run, `pipeline show` and the run's result read it back, and a flow run retried
from the UI (same flow run id) finds its completed nodes there and does not run them again.
A rollback marks the results it undid expired (`forget_results`), so a retry runs those nodes
again; a compensation node's task always runs (`refresh`), whatever an earlier attempt kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from flows.settings import apply_prefect_defaults

apply_prefect_defaults()

from prefect import get_run_logger, task  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402
from prefect.utilities.math import clamped_poisson_interval, lower_clamp_multiple  # noqa: E402

from flows.progress import CANCELLED, watch_loop  # noqa: E402
from nodes.base import NodeContext, RedactingLogger  # noqa: E402
from nodes.errors import NodeError  # noqa: E402
from nodes.runtime import execute_node, node_result  # noqa: E402

if TYPE_CHECKING:
    from flows.definition import Pipeline

__all__ = [
    "MAX_RETRY_AFTER_SECONDS",
    "PERSISTED",
    "RETRY_JITTER",
    "Backoff",
    "NodeCall",
    "failure",
    "forget_results",
    "keep_results",
    "kept_results",
    "node_digest",
    "node_digests",
    "node_task",
    "result_key",
    "show_result",
]

# each retry delay is spread over ±this fraction of it (Prefect's clamped Poisson jitter, see Backoff)
RETRY_JITTER = 0.5
_SHORTEST_JITTERED = lower_clamp_multiple(1 + RETRY_JITTER)  # of a planned delay (0.63)
# the longest a Retry-After hint may stretch one retry delay
MAX_RETRY_AFTER_SECONDS = 120.0


class Backoff(float):
    """A node's retry delays: exponential from `base`, jittered, in whole hundredths of a second.

    To Prefect's engine it is the sequence of delays (it indexes it by retry number); to
    the task run Prefect records it is the number `base`, so the UI's "Retry Delay" reads
    `2s`, not `NaNs` as for a list. Each delay is drawn when Prefect asks for it and
    rounded up to 0.01 s, so the log says "Retry 1/3 will start 1.37 second(s) from now"
    rather than sixteen digits (Prefect's own jitter is therefore off).
    """

    retries: int

    def __new__(cls, base: float, retries: int) -> Backoff:
        made = super().__new__(cls, base)
        made.retries = retries
        return made

    def __len__(self) -> int:
        return max(1, self.retries)

    def __getitem__(self, index: int) -> float:
        planned = float(self) * 2**index
        return math.ceil(clamped_poisson_interval(planned, clamping_factor=RETRY_JITTER) * 100) / 100

    def __reduce__(self):  # copies and pickles keep the schedule
        return (Backoff, (float(self), self.retries))


Sequence.register(Backoff)


@dataclasses.dataclass(frozen=True)
class NodeCall:
    """Everything one node task needs, as its one parameter (`node` in the UI's Task Inputs).

    Prefect lists every task parameter in the task run's inputs; one named `node`
    reads better there than six internal names, each shown as `[]`.
    """

    node_id: str
    node_type: str
    config: dict[str, Any]
    ctx: NodeContext
    dynamic: bool
    options: dict[str, Any]

    def digest(self) -> str:
        return node_digest(self.node_type, self.config, self.options)

    def __repr__(self) -> str:  # never the context (payload, outputs) in a log line
        return f"NodeCall({self.node_type} {self.node_id})"


def node_digest(node_type: str, config: dict[str, Any], options: dict[str, Any]) -> str:
    """The node's definition in 12 hex digits: a changed node is not taken from a past attempt."""
    text = json.dumps([node_type, config, options], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def node_digests(pipeline: Pipeline, ids: Iterable[str]) -> dict[str, str]:
    """Each of these nodes' digest as the pipeline defines it now (id → digest)."""
    nodes = pipeline.nodes
    return {n: node_digest(nodes[n].type, nodes[n].config, pipeline.options(nodes[n])) for n in ids}


def result_key(flow_run_id: str, node_id: str, digest: str) -> str:
    """Where a node's result lives in the result storage: one folder per flow run."""
    return f"opsflow/{flow_run_id}/{node_id}-{digest}.json"


def _result_key(task_ctx, inputs: dict[str, Any]) -> str | None:
    call = inputs.get("node")
    call = call.unquote() if isinstance(call, quote) else call
    flow_run_id = task_ctx.task_run.flow_run_id
    if flow_run_id is None or not isinstance(call, NodeCall):
        return None
    return result_key(str(flow_run_id), call.node_id, call.digest())


# how every node task keeps its result: JSON (readable, no pickle to load back), keyed per run and node
PERSISTED: dict[str, Any] = {"cache_key_fn": _result_key, "persist_result": True, "result_serializer": "json"}


def _retryable(task, task_run, state) -> bool:
    """Retry only what may pass on a second try: NodeErrors say so themselves."""
    exc = state.result(raise_on_failure=False, _sync=True)
    return exc.retryable if isinstance(exc, NodeError) else True


async def _run_node(node: NodeCall) -> dict:
    """The body of every node task: execute the node with this attempt's logger and count.

    The handler runs in a thread the task awaits, so the node's timeout fails the attempt
    on time even when the handler is stuck in blocking I/O. The abandoned thread cannot
    act afterwards: the handler's I/O takes its timeouts from `ctx.deadline`. The result
    is returned redacted: it is what Prefect persists.
    """
    from prefect.runtime import task_run

    node_id, node_type, ctx, options = node.node_id, node.node_type, node.ctx, node.options
    watch_loop()  # Ctrl-C in the CLI cancels this task run's loop: its work and its retry waits
    if CANCELLED.is_set():
        raise NodeError(f"node {node_id!r} not started: the run was interrupted")
    attempt = task_run.run_count or 1
    max_attempts = int(options["retries"]) + 1
    timeout = options["timeout_seconds"]
    log = RedactingLogger(get_run_logger(), ctx.secrets)
    deadline = time.monotonic() + timeout
    stop = threading.Event()  # set when this attempt is over, however it ended
    ctx = dataclasses.replace(
        ctx, log=log, attempt=attempt, max_attempts=max_attempts, deadline=deadline, stop=stop
    )
    try:
        try:
            work = _in_thread(execute_node, node_id, node_type, node.config, ctx, dynamic=node.dynamic)
            result = await asyncio.wait_for(work, timeout=timeout)
        except TimeoutError:
            error = NodeError(f"node {node_id!r} timed out after {timeout:g} s", retryable=True)
            error.duration_ms = timeout * 1000
            raise error from None
        finally:
            stop.set()  # a handler its thread still runs (timed out, cancelled) stops its work
    except NodeError as exc:
        exc.attempts = attempt
        if exc.retryable and exc.retry_after and attempt < max_attempts:
            # Prefect's own delay follows: jittered, it can be as short as this
            planned = options["retry_delay_seconds"] * 2 ** (attempt - 1) * _SHORTEST_JITTERED
            await asyncio.sleep(max(0.0, min(exc.retry_after, MAX_RETRY_AFTER_SECONDS) - planned))
        raise
    result["attempts"] = attempt
    result = ctx.secrets.redact(result)
    log.info("%s", result["summary"])  # the node's line in the UI's Logs tab
    return result


async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Await `fn` run in its own daemon thread.

    Unlike `asyncio.to_thread`, a thread abandoned at a timeout does not hold up the
    task's event loop on shutdown (which waits for its default executor).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def work() -> None:
        try:
            outcome = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            setter, value = future.set_exception, exc
        else:
            setter, value = future.set_result, outcome
        with contextlib.suppress(RuntimeError):  # the loop is gone: the attempt timed out
            loop.call_soon_threadsafe(settle, setter, value)

    threading.Thread(target=work, name="opsflow-node", daemon=True).start()
    return await future


@lru_cache(maxsize=1024)
def node_task(
    node_type: str, node_id: str, retries: int, delay: float, timeout: float, refresh: bool = False
):
    """The task of one node; `refresh` runs it even when an earlier attempt kept its result
    (a compensation node: each rollback undoes again), and keeps the new result in its place."""
    # decorator form: prefect's overloads take options or a function, not both in one call
    return task(
        name=node_type,
        task_run_name=node_id,
        retries=retries,
        retry_delay_seconds=Backoff(delay, retries) if retries and delay else 0,
        retry_condition_fn=_retryable if retries else None,
        # the timeout is enforced in `_run_node`: Prefect's own costs ~100 ms per task run here
        log_prints=False,
        refresh_cache=True if refresh else None,
        **PERSISTED,
    )(_run_node)


async def _node_result_store():
    """The result store node tasks keep their results in (storage, JSON serializer)."""
    from prefect.results import get_result_store

    return await get_result_store().aupdate_for_task(node_task("node", "node", 0, 0.0, 1.0))


async def kept_results(flow_run_id: str, digests: dict[str, str]) -> dict[str, tuple[Any, bool]]:
    """The results this flow run kept for these nodes (id → digest): id → (result, expired).

    Read by key, as Prefect's cache lookup reads them; a node with none (it did not
    complete, or was changed since: another digest) is left out.
    """
    from datetime import UTC, datetime

    store = await _node_result_store()
    found: dict[str, tuple[Any, bool]] = {}
    now = datetime.now(UTC)
    for node_id, digest in digests.items():
        try:
            record = await store.aread(result_key(flow_run_id, node_id, digest))
        except Exception:  # nothing kept, or not readable from here
            continue
        expiration = record.metadata.expiration
        found[node_id] = (record.result, expiration is not None and expiration <= now)
    return found


async def keep_results(flow_run_id: str, results: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """Keep these results (id → (digest, result)) as this flow run's own, as its node tasks would.

    For a run from a node of a past run (flows.resume): a retry of it finds them where it finds
    any completed node's, and a rollback can mark them expired. Returns whose were kept.
    """
    store = await _node_result_store()
    kept = []
    for node_id, (digest, result) in results.items():
        try:
            await store.awrite(result, key=result_key(flow_run_id, node_id, digest))
        except Exception:  # the caller names what was not kept
            continue
        kept.append(node_id)
    return kept


async def forget_results(flow_run_id: str, digests: dict[str, str]) -> list[str]:
    """Mark the kept results of these nodes (id → digest) of this flow run expired; return whose were.

    Prefect's cache lookup takes an expired record for an absent one, so a retry of this
    flow run runs the nodes again and keeps their new results in place. The old record
    stays readable: `pipeline show` of the attempt that made it still finds it.
    """
    from datetime import UTC, datetime, timedelta

    store = await _node_result_store()
    forgotten = []
    for node_id, digest in digests.items():
        try:
            record = await store.aread(result_key(flow_run_id, node_id, digest))
        except Exception:  # nothing kept (or not readable from here): nothing a retry could reuse
            continue
        expired = datetime.now(UTC) - timedelta(seconds=1)
        record.metadata = record.metadata.model_copy(update={"expiration": expired})
        try:
            await store.apersist_result_record(record)
        except Exception:  # the caller names what was not marked; the rollback itself goes on
            continue
        forgotten.append(node_id)
    return forgotten


async def show_result(future, result: dict[str, Any]) -> None:
    """Put a completed node's result on its task run's page in the UI (Details: "Result").

    Prefect records task runs from events, which make no result artifact of their own;
    this one carries the node's line and output (redacted) and where the result is stored.
    """
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.actions import ArtifactCreate
    from prefect.context import FlowRunContext

    from flows.render import result_markdown

    context = FlowRunContext.get()
    # the flow's own client: an async flow's, on the loop that awaits this
    if context is None or context.flow_run is None or not isinstance(context.client, PrefectClient):
        return
    data = getattr(future.state, "data", None)
    stored = getattr(getattr(data, "metadata", data), "storage_key", None)
    await context.client.create_artifact(
        ArtifactCreate(
            type="result",
            description=result_markdown(result),
            data={"node": result["node_id"], "summary": result.get("summary"), "stored at": stored},
            task_run_id=future.task_run_id,
            flow_run_id=context.flow_run.id,
        )
    )


def failure(node_id: str, node_type: str, state, ctx: NodeContext) -> tuple[dict, str]:
    """A failed node's result and message, from its final Prefect state."""
    exc = state.result(raise_on_failure=False, _sync=True)
    if isinstance(exc, NodeError):
        message = exc.message
        error = {
            "message": message,
            "retryable": exc.retryable,
            **({"details": exc.details} if exc.details else {}),
        }
        attempts = getattr(exc, "attempts", 1)
        duration = getattr(exc, "duration_ms", 0.0)
    else:
        # node errors and timeouts arrive as NodeErrors; anything else crashed the task run
        message = f"node {node_id!r} crashed: {state.message or exc}"
        error = {"message": message, "retryable": True}
        attempts, duration = getattr(exc, "attempts", 0), 0.0
    message = ctx.secrets.redact(message)
    error = ctx.secrets.redact(error)
    return node_result(node_id, node_type, errors=[error], duration_ms=duration, attempts=attempts), message
