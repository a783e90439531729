"""One node as a Prefect task: its retries, its timeout, and the thread its handler runs in.

Prefect retries a node only when its NodeError says a second try may pass, and waits
out a server's Retry-After; the node's timeout is enforced here, on the task's own
event loop, because Prefect's costs ~100 ms per task run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from flows.settings import apply_prefect_defaults

apply_prefect_defaults()

from prefect import get_run_logger, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.tasks import exponential_backoff  # noqa: E402
from prefect.utilities.math import lower_clamp_multiple  # noqa: E402

from flows.progress import CANCELLED, watch_loop  # noqa: E402
from nodes.base import NodeContext, RedactingLogger  # noqa: E402
from nodes.errors import NodeError  # noqa: E402
from nodes.runtime import execute_node, node_result  # noqa: E402

__all__ = ["MAX_RETRY_AFTER_SECONDS", "RETRY_JITTER", "failure", "node_task"]

# Prefect spreads each retry delay over ±this fraction of it
RETRY_JITTER = 0.5
_SHORTEST_JITTERED = lower_clamp_multiple(1 + RETRY_JITTER)  # of a planned delay (0.63)
# the longest a Retry-After hint may stretch one retry delay
MAX_RETRY_AFTER_SECONDS = 120.0


def _retryable(task, task_run, state) -> bool:
    """Retry only what may pass on a second try: NodeErrors say so themselves."""
    exc = state.result(raise_on_failure=False, _sync=True)
    return exc.retryable if isinstance(exc, NodeError) else True


async def _run_node(
    node_id: str, node_type: str, config: dict, ctx: NodeContext, dynamic: bool, options: dict
) -> dict:
    """The body of every node task: execute the node with this attempt's logger and count.

    The handler runs in a thread the task awaits, so the node's timeout fails the attempt
    on time even when the handler is stuck in blocking I/O. The abandoned thread cannot
    act afterwards: the handler's I/O takes its timeouts from `ctx.deadline`.
    """
    from prefect.runtime import task_run

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
            work = _in_thread(execute_node, node_id, node_type, config, ctx, dynamic=dynamic)
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
def node_task(node_type: str, node_id: str, retries: int, delay: float, timeout: float):
    # decorator form: prefect's overloads take options or a function, not both in one call
    return task(
        name=node_type,
        task_run_name=node_id,
        retries=retries,
        retry_delay_seconds=exponential_backoff(delay) if retries and delay else 0,
        retry_jitter_factor=RETRY_JITTER if retries and delay else None,
        retry_condition_fn=_retryable if retries else None,
        # the timeout is enforced in `_run_node`: Prefect's own costs ~100 ms per task run here
        cache_policy=NO_CACHE,
        persist_result=False,
        log_prints=False,
    )(_run_node)


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
