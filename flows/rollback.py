"""Rollback: a failed run's compensation nodes (a node's `on_failure`) undo what completed, newest first.

When a run ends failed (a required node failed, without `--continue-on-error`), each node
that completed, in reverse completion order, has its compensation nodes run, in the order
its `on_failure` lists them, one after another, as node tasks like any other (retries,
timeout, the UI's graph and the node table). Their templates see the outputs so far
(`nodes.*`), `run.status` ("failed") and `run.error` (the failure). A compensation that
fails is recorded and logged; the run's error stays the original failure. A run that did
not fail, or that was interrupted (Ctrl-C: stop now, not undo), rolls nothing back: its
compensation nodes are recorded as skipped, with the reason.

Before a node's compensations run, its kept result, and those of the completed nodes
after it (they built on what is undone), are marked expired: a retry of the same flow
run runs them again rather than reusing results whose effects were undone.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from flows.settings import apply_prefect_defaults

apply_prefect_defaults()

from prefect import get_run_logger  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402

from flows.definition import Pipeline  # noqa: E402
from flows.node_task import NodeCall, failure, forget_results, node_digests, node_task  # noqa: E402
from flows.progress import CANCELLED, emit  # noqa: E402
from flows.runbook import RunBook, WhenFailed  # noqa: E402
from nodes.base import NodeContext  # noqa: E402
from nodes.runtime import node_result  # noqa: E402

__all__ = ["NOT_NEEDED", "roll_back", "rollback_note"]

NOT_NEEDED = "rollback not needed"


async def roll_back(pipeline: Pipeline, book: RunBook, ctx: NodeContext, futures: dict[str, Any]) -> None:
    """Run the compensation nodes a failed run calls for; record every other one as skipped, with why.

    `futures` are the node tasks of the run, by node id: a compensation waits on the node
    it undoes (and on the compensation before it), so the UI's graph shows the rollback.
    """
    if not pipeline.compensations:
        return
    if CANCELLED.is_set():
        _skip_all(book, "no rollback: the run was interrupted")
        return
    if book.status != "failed":
        why = "the run did not fail" + (" (partial: --continue-on-error)" if book.status == "partial" else "")
        _skip_all(book, f"{NOT_NEEDED}: {why}")
        return
    completed = [node_id for node_id in reversed(book.order) if book.state[node_id] == "done"]
    plan = [(owner, comp) for owner in completed for comp in pipeline.nodes[owner].on_failure]
    for comp, owner in pipeline.compensations.items():
        if book.state[owner] != "done":
            _skip(book, comp, f"{NOT_NEEDED}: {owner!r} did not complete")
    failed_ctx = dataclasses.replace(ctx, run=dataclasses.replace(ctx.run, status="failed", error=book.error))
    forgotten: set[str] = set()
    previous: str | None = None
    for owner, comp in plan:
        try:
            reason = book.rollback_skip_reason(comp, failed_ctx.data())
        except WhenFailed as exc:
            _fail(book, comp, ctx.secrets.redact(str(exc)))
            continue
        if reason:
            _skip(book, comp, reason)
            continue
        if owner not in forgotten:
            forgotten |= await _forget(pipeline, book, ctx, owner, forgotten)
        # for the UI's graph; Prefect would not start a task waiting on a failed one
        upstream = [futures[n] for n in (owner, previous) if n in futures and book.state[n] == "done"]
        futures[comp] = await _compensate(pipeline, book, failed_ctx, comp, upstream)
        previous = comp


async def _compensate(
    pipeline: Pipeline, book: RunBook, ctx: NodeContext, comp: str, upstream: list[Any]
) -> Any:
    """Run one compensation node as a node task and record its result; returns its future."""
    node = pipeline.nodes[comp]
    options = pipeline.options(node)
    call = NodeCall(comp, node.type, node.config, ctx, pipeline.dynamic[comp], options)
    the_task = node_task(
        node.type, comp, options["retries"], options["retry_delay_seconds"], options["timeout_seconds"], True
    )
    book.start(comp)
    loop = asyncio.get_running_loop()
    started = loop.time()
    future = the_task.submit(quote(call), wait_for=upstream)
    await asyncio.wrap_future(future.wrapped_future)
    future.wait()
    total_ms = round((loop.time() - started) * 1000, 2)
    if future.state.is_completed():
        result = {**future.result(), "total_ms": total_ms}
        book.finish(comp, result)
        ctx.nodes[comp] = result["output"]
    else:
        failed, message = failure(comp, node.type, future.state, ctx)
        book.fail(comp, {**failed, "total_ms": total_ms}, message)
        ctx.nodes[comp] = None
        get_run_logger().error("rollback: %s (the run's error stays %s)", message, book.error)
    emit(book.event(comp))
    return future


async def _forget(
    pipeline: Pipeline, book: RunBook, ctx: NodeContext, owner: str, done: set[str]
) -> set[str]:
    """Mark expired the kept results of `owner` and the completed nodes after it; return their ids."""
    run_id = ctx.run.run_id
    ids = [owner, *(n for n in pipeline.descendants(owner) if book.state[n] == "done")]
    ids = [n for n in ids if n not in done and n not in pipeline.compensations]
    if not run_id or not ids:
        return set(ids)
    found = await forget_results(run_id, node_digests(pipeline, ids))
    missing = [n for n in ids if n not in found]
    if missing:
        get_run_logger().warning(
            "rollback: the kept result of %s could not be marked expired; a retry of this run may reuse it",
            ", ".join(missing),
        )
    return set(ids)


def _skip(book: RunBook, comp: str, reason: str) -> None:
    node = book.pipeline.nodes[comp]
    book.skipped(comp, node_result(comp, node.type, skipped=True, skip_reason=reason))
    emit(book.event(comp))


def _skip_all(book: RunBook, reason: str) -> None:
    for comp in book.pipeline.compensations:
        _skip(book, comp, reason)


def _fail(book: RunBook, comp: str, message: str) -> None:
    node = book.pipeline.nodes[comp]
    book.fail(comp, node_result(comp, node.type, errors=[{"message": message, "retryable": False}]), message)
    emit(book.event(comp))


def rollback_note(pipeline: Pipeline, book: RunBook) -> str:
    """What the rollback did, for the end of the failed run's state message (after the original error)."""
    ran = [c for c in book.order if c in pipeline.compensations and book.state[c] in ("done", "failed")]
    if not ran:
        return ""
    failed = [c for c in ran if book.state[c] == "failed"]
    done = [c for c in ran if c not in failed]
    parts = [f"rolled back: {', '.join(done)}"] if done else []
    if failed:
        parts.append(f"rollback failed: {', '.join(failed)}")
    return "; " + "; ".join(parts)
