"""Which node runs next, and which are skipped and why: the flow's bookkeeping, free of Prefect.

A node becomes ready once all its predecessors have finished. Before it starts it may
be skipped: the run already failed, `--only`/`--skip`, a branch not taken (every
incoming edge is dead: a condition chose another branch, or did not run at all),
`skip_if_errors`, or a falsy `when`. A skipped or failed node's output is null to
the nodes after it (a join sees the inputs that did run). A compensation node is
never ready: it runs only in a rollback (flows.rollback).
"""

from __future__ import annotations

from typing import Any

from flows.definition import Pipeline
from nodes.jmes import search, truthy

BRANCH_NOT_TAKEN = "branch not taken"


class WhenFailed(Exception):
    """A node's `when` raised at run time (e.g. a type error): the node fails."""


class RunBook:
    """The state of every node of one run."""

    def __init__(
        self,
        pipeline: Pipeline,
        only: list[str] | None = None,
        skip: list[str] | None = None,
        continue_on_error: bool = False,
    ):
        self.pipeline = pipeline
        self.continue_on_error = continue_on_error
        self.only = set(only) if only else None
        self.skip = set(skip or ())
        self.state: dict[str, str] = dict.fromkeys(pipeline.nodes, "pending")
        self.results: dict[str, dict[str, Any]] = {}
        self.not_taken: dict[str, set[str]] = {}
        # nodes every incoming edge of which is dead (skipped: a branch not taken)
        self.unreached: set[str] = set()
        self.failed_required: str | None = None
        self.error: str | None = None
        self.order: list[str] = []

    def ready(self) -> list[str]:
        """Pending nodes whose predecessors have all finished, in definition order."""
        compensations = self.pipeline.compensations
        return [
            node_id
            for node_id, state in self.state.items()
            if state == "pending"
            and node_id not in compensations
            and all(
                self.state[p] in ("done", "failed", "skipped") for p in self.pipeline.predecessors[node_id]
            )
        ]

    def skip_reason(self, node_id: str, data: dict[str, Any]) -> str | None:
        """Why `node_id` must not run, or None to run it.

        Raises WhenFailed when its `when` errors: a broken guard fails the node, it is
        never a silent skip (that would be a silently missed page).
        """
        node = self.pipeline.nodes[node_id]
        preds = self.pipeline.predecessors[node_id]
        dead = [p for p in preds if self._dead(p, node_id)]
        if preds and len(dead) == len(preds):
            # marked whatever reason is shown, so nothing beyond it runs either
            self.unreached.add(node_id)
        if self.failed_required:
            return f"run failed at node {self.failed_required!r}"
        if self.only is not None and node_id not in self.only:
            return "not in --only"
        if node_id in self.skip:
            return "in --skip"
        if node_id in self.unreached:
            idle = [p for p in dead if self._condition_idle(p)]
            return f"condition {idle[0]!r} did not run" if idle else BRANCH_NOT_TAKEN
        failed = [other for other in node.skip_if_errors if self.state.get(other) == "failed"]
        if failed:
            return f"skip_if_errors: {', '.join(failed)} failed"
        return _when_reason(node_id, node.when, data)

    def rollback_skip_reason(self, node_id: str, data: dict[str, Any]) -> str | None:
        """Why compensation node `node_id` must not run in this rollback, or None to run it.

        `--only`/`--skip` and `when` apply as to any node; a broken `when` raises WhenFailed.
        """
        node = self.pipeline.nodes[node_id]
        if self.only is not None and node_id not in self.only:
            return "not in --only"
        if node_id in self.skip:
            return "in --skip"
        return _when_reason(node_id, node.when, data)

    def _condition_idle(self, node_id: str) -> bool:
        """A condition that was skipped or failed: it chose no branch, so none runs."""
        return self.pipeline.nodes[node_id].type == "condition" and self.state[node_id] in (
            "skipped",
            "failed",
        )

    def _dead(self, source: str, target: str) -> bool:
        """An edge that cannot carry the run: its source was never reached, or chose another branch."""
        if source in self.unreached or self._condition_idle(source):
            return True
        if self.pipeline.nodes[source].type != "condition":
            return False
        return target in self.not_taken.get(source, set())

    def start(self, node_id: str) -> None:
        self.state[node_id] = "running"

    def finish(self, node_id: str, result: dict[str, Any]) -> None:
        self.results[node_id] = result
        self.state[node_id] = "done"
        self.order.append(node_id)
        if self.pipeline.nodes[node_id].type == "condition":
            output = result.get("output") or {}
            taken = set(output.get("taken") or ())
            self.not_taken[node_id] = set(output.get("not_taken") or ()) - taken

    def fail(self, node_id: str, result: dict[str, Any], message: str) -> None:
        self.results[node_id] = result
        self.state[node_id] = "failed"
        self.order.append(node_id)
        # --continue-on-error: the seed's degraded run, remaining nodes run and the status is partial
        if self.pipeline.nodes[node_id].required and not self.failed_required and not self.continue_on_error:
            self.failed_required = node_id
            self.error = message

    def skipped(self, node_id: str, result: dict[str, Any]) -> None:
        self.results[node_id] = result
        self.state[node_id] = "skipped"

    @property
    def running(self) -> list[str]:
        return [node_id for node_id, state in self.state.items() if state == "running"]

    @property
    def status(self) -> str:
        if self.failed_required:
            return "failed"
        if any(state == "failed" for state in self.state.values()):
            return "partial"
        return "completed"

    def executed(self) -> list[str]:
        return [node_id for node_id in self.order if self.state[node_id] in ("done", "failed")]

    def skipped_ids(self) -> list[str]:
        return [node_id for node_id, state in self.state.items() if state == "skipped"]

    def event(self, node_id: str) -> dict[str, Any]:
        """The progress event (flows.progress) of a node that just finished, failed or was skipped."""
        result = self.results[node_id]
        return {
            "node_id": node_id,
            "node_type": result["node_type"],
            "state": self.state[node_id],
            "index": len(self.results),
            "total": len(self.pipeline.nodes),
            "duration_ms": result["duration_ms"],
            "skip_reason": result["skip_reason"],
            "error": result["errors"][0]["message"] if result["errors"] else None,
        }


def _when_reason(node_id: str, when: str | None, data: dict[str, Any]) -> str | None:
    """`when: ... is false` when the guard is falsy; WhenFailed when it raises."""
    if when is None:
        return None
    try:
        value = search(when, data)
    except ValueError as exc:
        raise WhenFailed(f"node {node_id!r}: when: {exc}") from None
    return None if truthy(value) else f"when: {when} is false"
