"""The graph of a definition: its edges, and the problems only a graph can have.

Cycles, nodes unreachable from the entry, `next` naming a missing node, and
`skip_if_errors` naming a node that is not upstream, each reported with its node.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__all__ = ["edges", "order_problems"]

if TYPE_CHECKING:
    from flows.definition import Definition, Node, Pipeline


def edges(definition: Definition, known: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Successors of every node: `next` (plus a condition's branches), or list order if no node has `next`."""
    problems = []
    nodes = definition.nodes
    successors: dict[str, list[str]] = {node.id: [] for node in nodes}
    chained = not any(node.next is not None or node.type == "condition" for node in nodes)
    # a duplicate id is reported once, by validation; the chain runs over the distinct ids
    chain = list(successors)
    position = {node_id: index for index, node_id in enumerate(chain)}
    for node in nodes:
        if chained:
            index = position[node.id]
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
        if node_id in reachable:
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
