"""`--from NODE`: a new run that starts at one node, with what came before it taken from a past run.

The chosen node and every node it leads to run again. Every other node that completed in
the past run is not run: its stored result (as persisted, redacted, by `flows.node_task`)
stands in for it, so what it did (a page sent, an incident stored) is not done twice. A
node that did not complete there (it failed, or the run never reached it) is decided
afresh, as in any run: an upstream node that failed runs again, since the chosen node
needs its output.

The results taken are kept as the new run's own (as its node tasks keep theirs): a retry
of the new run finds them there like any completed node's, not in the past run, and a
rollback in the new run marks them expired like any other, so a retry runs them again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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
    "reused_results",
    "stored_results_of",
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
    after = {from_node}
    stack = [from_node]
    while stack:
        for following in pipeline.successors.get(stack.pop(), []):
            if following not in after:
                after.add(following)
                stack.append(following)
    return after


def reused_results(
    pipeline: Pipeline, from_node: str, stored: dict[str, dict[str, Any]], past_run: str
) -> dict[str, dict[str, Any]]:
    """The past run's results that stand in for their nodes (definition order), each marked `reused_from`."""
    again = reran(pipeline, from_node)
    return {
        node_id: {**stored[node_id], "reused_from": past_run}
        for node_id in pipeline.nodes
        if node_id not in again and node_id in stored
    }


async def stored_results_of(ref: str) -> tuple[Any, dict[str, dict[str, Any]]]:
    """(the flow run `ref` names, its nodes' stored results by node id)."""
    from prefect.client.orchestration import get_client

    from flows.history import resolve_run
    from flows.past_runs import task_runs_of
    from flows.results import stored_results

    async with get_client() as client:
        flow_run = await resolve_run(client, ref)
        stored = await stored_results(await task_runs_of(client, flow_run.id))
    return flow_run, stored


async def reuse_past_run(
    pipeline: Pipeline,
    book: RunBook,
    ctx: NodeContext,
    from_run: str,
    from_node: str,
    on_done: Callable[[str], None],
) -> str | None:
    """Mark the nodes the past run's results stand in for done, as if they had run; tag the run.

    Only on the run's first attempt: a retry of it (run count > 1) has these results as its own
    (see the module's docstring), so nothing is taken from the past run again. Returns the
    incident id a reused ingest stored. `on_done(node_id)` reports each node as the flow
    reports a finished one.
    """
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    from flows.history import tag_flow_run
    from flows.node_task import keep_results, node_digest

    if (flow_run.run_count or 1) > 1:
        return None
    past, stored = await stored_results_of(from_run)
    reused = reused_results(pipeline, from_node, stored, str(past.id))
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
        nodes = pipeline.nodes
        digests = {n: node_digest(nodes[n].type, nodes[n].config, pipeline.options(nodes[n])) for n in reused}
        kept = await keep_results(ctx.run.run_id, {n: (digests[n], reused[n]) for n in reused})
        if len(kept) < len(reused):
            get_run_logger().warning(
                "could not keep the results taken from run %s for %s: a retry of this run runs them again",
                past.name,
                ", ".join(n for n in reused if n not in kept),
            )
    get_run_logger().info(
        "starting at node %r of run %s: %s taken from it",
        from_node,
        past.name,
        ", ".join(reused) or "no node",
    )
    return incident_id
