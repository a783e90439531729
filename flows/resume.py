"""`--from NODE`: a new run that starts at one node, with what came before it taken from a past run.

The chosen node and every node it leads to run again. Every other node that completed in
the past run is not run: its kept result (as persisted, redacted, by `flows.node_task`)
stands in for it, so what it did (a page sent, an incident stored) is not done twice. A
node that did not complete there (it failed, the run never reached it, a rollback there
undid it, or it was changed since) is decided afresh, as in any run: an upstream node
that failed runs again, since the chosen node needs its output. Compensation nodes are
never taken: they belong to the past run's rollback.

The results taken are kept as the new run's own (as its node tasks keep theirs): a retry
of the new run finds them there like any completed node's, not in the past run, and a
rollback in the new run marks them expired like any other, so a retry runs them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from flows.definition import Pipeline
from nodes.errors import UsageError

if TYPE_CHECKING:
    from flows.runbook import RunBook
    from nodes.base import NodeContext

__all__ = [
    "RESUMED_TAG",
    "check_resume",
    "reran",
    "resumed_tag",
    "reuse_past_run",
    "taken_nodes",
]

# the tag of a run started from a node of another: `resumed-from:<first 8 of its id>`
RESUMED_TAG = "resumed-from"


def check_resume(pipeline: Pipeline, from_run: str | None, from_node: str | None) -> None:
    """Both or neither of `from_run` and `from_node`, and a node the definition has."""
    if not (from_run and from_node):
        raise UsageError("from_run and from_node go together: the past run, and the node to start at")
    reran(pipeline, from_node)


def resumed_tag(from_run: str | None) -> str:
    """`resumed-from:<first 8 of the past run's id>`, or "" for a run that resumes none."""
    return f"{RESUMED_TAG}:{str(from_run)[:8]}" if from_run else ""


def reran(pipeline: Pipeline, from_node: str) -> set[str]:
    """`from_node` and every node after it: what a run from `from_node` runs again."""
    if from_node not in pipeline.nodes:
        raise UsageError(f"Unknown node id for --from: {from_node} (nodes: {', '.join(pipeline.nodes)})")
    if from_node in pipeline.compensations:
        raise UsageError(
            f"--from {from_node}: a compensation node runs only in a rollback "
            f"(of {pipeline.compensations[from_node]}); start from a node of the graph"
        )
    after = {from_node}
    stack = [from_node]
    while stack:
        for following in pipeline.successors.get(stack.pop(), []):
            if following not in after:
                after.add(following)
                stack.append(following)
    return after


def taken_nodes(pipeline: Pipeline, from_node: str) -> dict[str, str]:
    """The nodes a run from `from_node` may take from a past run (definition order) → their digests.

    Not the nodes it runs again, and never a compensation node (it belongs to the past
    run's rollback). The digest is of the node as defined now: a node changed since is not
    taken, it runs.
    """
    from flows.node_task import node_digests

    again = reran(pipeline, from_node)
    taken = [n for n in pipeline.nodes if n not in again and n not in pipeline.compensations]
    return node_digests(pipeline, taken)


async def reuse_past_run(
    pipeline: Pipeline,
    book: RunBook,
    ctx: NodeContext,
    from_run: str,
    from_node: str,
    on_done: Callable[[str], None],
) -> str | None:
    """Mark the nodes the past run's results stand in for done, as if they had run; tag the run.

    A node this run already kept a result for (an earlier attempt of it: valid, or marked
    expired by its rollback) is left to the node task, which takes the valid one and runs
    the expired one again. Of the others, those with a result kept by the past run under
    their current digest, not expired (a rollback there undid it), are taken. Returns the
    incident id a taken ingest stored. `on_done(node_id)` reports each node as the flow
    reports a finished one.
    """
    from prefect import get_run_logger
    from prefect.client.orchestration import get_client

    from flows.history import resolve_run, tag_flow_run
    from flows.node_task import keep_results, kept_results

    async with get_client() as client:
        past = await resolve_run(client, from_run)
    digests = taken_nodes(pipeline, from_node)
    own = await kept_results(ctx.run.run_id, digests) if ctx.run.run_id else {}
    theirs = await kept_results(str(past.id), {n: d for n, d in digests.items() if n not in own})
    reused = {
        node_id: {**value, "reused_from": str(past.id)}
        for node_id, (value, expired) in theirs.items()
        if not expired and isinstance(value, dict) and value.get("node_id") == node_id
    }
    if ctx.run.run_id:
        await tag_flow_run(ctx.run.run_id, pipeline.name, ctx.run.source, resumed_tag(str(past.id)))
    incident_id = None
    for node_id, result in reused.items():
        book.finish(node_id, result)
        ctx.nodes[node_id] = result["output"]
        if result["node_type"] == "ingest" and isinstance(result["output"].get("incident"), dict):
            ctx.incident = result["output"]["incident"]
            incident_id = result["output"].get("incident_id") or ctx.incident.get("id")
        on_done(node_id)
    if ctx.run.run_id and reused:
        kept = await keep_results(ctx.run.run_id, {n: (digests[n], reused[n]) for n in reused})
        if len(kept) < len(reused):
            get_run_logger().warning(
                "could not keep the results taken from run %s for %s: a retry of this run runs them again",
                past.name,
                ", ".join(n for n in reused if n not in kept),
            )
    undone = [n for n, (_, expired) in theirs.items() if expired]
    get_run_logger().info(
        "starting at node %r of run %s: %s taken from it%s",
        from_node,
        past.name,
        ", ".join(reused) or "no node",
        f" (not {', '.join(undone)}: rolled back there)" if undone else "",
    )
    return incident_id
