"""The graph of a definition: its edges, and the problems only a graph can have.

Cycles, nodes unreachable from the entry, `next` naming a missing node, and
`skip_if_errors` naming a node that is not upstream, each reported with its node.
A compensation node (named in another node's `on_failure`) is outside the graph: it runs
only to roll a failed run back (flows.rollback), so it has no edges, in or out.
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING

__all__ = ["compensation_problems", "edges", "order_problems"]

if TYPE_CHECKING:
    from flows.definition import Definition, Node, Pipeline


def edges(definition: Definition, known: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Successors of every node: `next` (plus a condition's branches), or list order if no node has `next`."""
    problems = []
    nodes = definition.nodes
    successors: dict[str, list[str]] = {node.id: [] for node in nodes}
    chained = not any(node.next is not None or node.type == "condition" for node in nodes)
    compensating = {comp for node in nodes for comp in node.on_failure}
    # a duplicate id is reported once, by validation; the chain runs over the distinct ids
    chain = [node_id for node_id in successors if node_id not in compensating]
    position = {node_id: index for index, node_id in enumerate(chain)}
    for node in nodes:
        if chained:
            index = position.get(node.id, len(chain))
            targets = [chain[index + 1]] if index + 1 < len(chain) else []
        else:
            targets = node.next_ids()
            if node.type == "condition":
                targets += [t for t in _branch_ids(node) if t not in targets]
        for target in targets:
            if target not in known:
                problems.append(f"node {node.id!r}: next {target!r} is not a node of this definition")
            elif target == node.id:
                problems.append(f"node {node.id!r}: next points to itself (cycle)")
            elif target not in successors[node.id]:
                successors[node.id].append(target)
    return successors, problems


def _branch_ids(node: Node) -> list[str]:
    ids = []
    for key in ("then", "else"):
        value = node.config.get(key)
        if isinstance(value, str):
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(v for v in value if isinstance(v, str))
    return ids


def order_problems(pipeline: Pipeline) -> list[str]:
    """Cycles, nodes unreachable from the entry, and skip_if_errors naming a non-upstream node."""
    problems = []
    cycle = _find_cycle(pipeline.successors)
    if cycle:
        problems.append(f"node {cycle[0]!r}: cycle {' → '.join(cycle)}")
    reachable = {pipeline.entry}
    stack = [pipeline.entry]
    while stack:
        for target in pipeline.successors[stack.pop()]:
            if target not in reachable:
                reachable.add(target)
                stack.append(target)
    for node_id in pipeline.successors:
        if node_id in reachable or node_id in pipeline.compensations:
            continue
        if not pipeline.predecessors[node_id]:
            # a second root is never run as one: only the first node is the entry
            problems.append(
                f"node {node_id!r}: unreachable from the entry node {pipeline.entry!r} "
                "(it has no incoming edge; only the first node is an entry)"
            )
        else:
            problems.append(f"node {node_id!r}: unreachable from the entry node {pipeline.entry!r}")
    if cycle:
        return problems
    for node in pipeline.definition.nodes:
        if not node.skip_if_errors:
            continue
        upstream = pipeline.ancestors(node.id)
        for other in node.skip_if_errors:
            if other not in upstream:
                problems.append(
                    f"node {node.id!r}: skip_if_errors names {other!r}, which is not upstream of it"
                )
    return problems


def compensation_problems(definition: Definition, known: set[str]) -> list[str]:
    """What is wrong with the nodes' `on_failure` lists and the compensation nodes they name.

    A compensation node undoes one node and runs only in a rollback: never the entry, never
    a `next` or branch target, with no `next` or `on_failure` of its own (a rollback runs
    each compensation once, alone; a node needing several lists several), and never an
    approval or a condition (a rollback neither waits for a person nor branches).
    """
    problems = []
    owners: dict[str, str] = {}
    for node in definition.nodes:
        for comp in dict.fromkeys(node.on_failure):
            where = f"node {node.id!r}: on_failure"
            if node.on_failure.count(comp) > 1:
                problems.append(f"{where} names {comp!r} twice")
            if comp not in known:
                close = difflib.get_close_matches(comp, sorted(known - {node.id}), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{where} names {comp!r}, which is not a node of this definition{hint}")
            elif comp == node.id:
                problems.append(f"{where} names the node itself: a compensation node is another node")
            elif comp in owners:
                problems.append(
                    f"node {comp!r}: compensation node of both {owners[comp]!r} and {node.id!r}; "
                    "a compensation node undoes one node (give each its own)"
                )
            else:
                owners[comp] = node.id
    by_id = {node.id: node for node in definition.nodes}
    entry = definition.nodes[0].id if definition.nodes else None
    for comp, owner in owners.items():
        node = by_id[comp]
        where = f"node {comp!r} (a compensation node, in on_failure of {owner!r})"
        if comp == entry:
            problems.append(f"{where}: is the first node, the entry; it runs only in a rollback")
        if node.next is not None:
            problems.append(f"{where}: has next; it runs alone in a rollback (name several in on_failure)")
        if node.on_failure:
            problems.append(f"{where}: has an on_failure of its own; compensations are not chained")
        if node.type in ("approval", "condition"):
            problems.append(
                f"{where}: is {'an' if node.type == 'approval' else 'a'} {node.type}; a rollback "
                "neither waits for a person nor branches"
            )
    for node in definition.nodes:
        targets = node.next_ids() + (_branch_ids(node) if node.type == "condition" else [])
        for target in dict.fromkeys(targets):
            if target in owners and target != node.id:
                problems.append(
                    f"node {node.id!r}: next {target!r} is a compensation node (in on_failure of "
                    f"{owners[target]!r}); it runs only to roll a failed run back, never in the graph"
                )
    return problems


def _find_cycle(successors: dict[str, list[str]]) -> list[str] | None:
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(successors, WHITE)
    for start in successors:
        if colour[start] != WHITE:
            continue
        path = [start]
        iterators = [iter(successors[start])]
        colour[start] = GREY
        while iterators:
            target = next(iterators[-1], None)
            if target is None:
                colour[path.pop()] = BLACK
                iterators.pop()
            elif colour[target] == GREY:
                return path[path.index(target) :] + [target]
            elif colour[target] == WHITE:
                colour[target] = GREY
                path.append(target)
                iterators.append(iter(successors[target]))
    return None
