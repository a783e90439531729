"""Validate a definition completely: every problem at once, each naming its node, none hiding another.

A top-level mistake (no `version`, a wrong type) does not hide node config errors, and
a duplicate id does not hide an unreachable node. Node configs are checked strictly
(`"warning": "80"` is an error) and for what would fail or misfire at run time
(flows.checks); values that are templates or `${...}` references are only known then.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails, InitErrorDetails

from flows.checks import config_problems, expression_problems
from flows.definition import SCHEMA_VERSION, Definition, Node, Pipeline, canonical_hash, definition_directory
from flows.graph import compensation_problems, edges, order_problems
from flows.limits import MAX_NODES, LimitError, check_value_depth
from flows.triggers import trigger_problems
from nodes import get_node_type
from nodes.errors import DefinitionError
from nodes.runtime import format_validation_error
from nodes.templating import has_dynamic

__all__ = ["validate_definition"]


def validate_definition(raw: dict[str, Any], *, source: str = "inline", name: str | None = None) -> Pipeline:
    """Validate `raw`; raise DefinitionError listing every problem."""
    _check_limits(raw)
    problems: list[str] = []
    definition: Definition | None
    try:
        definition, complete = Definition.model_validate(raw), True
    except ValidationError as exc:
        problems.extend(_structure_problems(exc, raw))
        definition, complete = _salvage(raw)
    nodes = definition.nodes if definition is not None else []
    ids = {node.id for node in nodes} | _raw_ids(raw)
    seen: set[str] = set()
    for node in nodes:
        if node.id in seen:
            problems.append(f"node {node.id!r}: duplicate id")
        seen.add(node.id)
    # a node config may check the files it names beside the definition's file (command schemas);
    # a definition that names no file (inline, sent over HTTP) gets no file read for it
    directory = definition_directory(source)
    context = {"definition_dir": directory} if directory else None
    params = _raw_parameter_names(raw)
    for node in nodes:
        problems.extend(_node_problems(node, ids, context, params))
    for policy, configs in _policies(raw).items():
        for index, config in enumerate(configs):
            problems.extend(_policy_problems(f"{policy}[{index}]", config, ids, params))
    if definition is None or not complete:
        raise DefinitionError(list(dict.fromkeys(problems)))
    problems.extend(trigger_problems(definition.triggers, definition.parameters))
    successors, graph_problems = edges(definition, seen)
    problems.extend(graph_problems)
    problems.extend(compensation_problems(definition, seen))
    pipeline = Pipeline(
        definition=definition,
        name=name or definition.name or "inline",
        definition_version=f"{definition.version}+{canonical_hash(raw)}",
        source=source,
        raw=raw,
        successors=successors,
        predecessors={node_id: [] for node_id in successors},
    )
    for node_id, targets in successors.items():
        for target in targets:
            pipeline.predecessors[target].append(node_id)
    problems.extend(order_problems(pipeline))
    if problems:
        raise DefinitionError(list(dict.fromkeys(problems)))
    return pipeline


def _check_limits(raw: dict[str, Any]) -> None:
    """Refuse, before any model sees it, a definition too deep or with too many nodes."""
    try:
        check_value_depth(raw, "definition")
    except LimitError as exc:
        raise DefinitionError(str(exc)) from None
    nodes = raw.get("nodes")
    if isinstance(nodes, list) and len(nodes) > MAX_NODES:
        raise DefinitionError(f"nodes: {len(nodes)} nodes, over {MAX_NODES} (the limit)")


def _salvage(raw: dict[str, Any]) -> tuple[Definition | None, bool]:
    """The nodes that are valid on their own when the definition as a whole is not, and
    whether that is all of them: only then is the graph checked (a missing node would
    make the edges to it look wrong).
    """
    items = raw.get("nodes")
    if not isinstance(items, list) or not items:
        return None, False
    nodes = []
    for item in items:
        try:
            nodes.append(Node.model_validate(item))
        except ValidationError:
            pass
    if not nodes:
        return None, False
    return Definition.model_construct(version=SCHEMA_VERSION, nodes=nodes, name=None), len(nodes) == len(
        items
    )


def _raw_ids(raw: dict[str, Any]) -> set[str]:
    items = raw.get("nodes")
    return (
        {n["id"] for n in items if isinstance(n, dict) and isinstance(n.get("id"), str)}
        if isinstance(items, list)
        else set()
    )


def _raw_parameter_names(raw: dict[str, Any]) -> set[str] | None:
    """The declared parameter names (even when the block has errors); None when it is no object."""
    block = raw.get("parameters", {})
    return {str(name) for name in block} if isinstance(block, dict) else None


def _policies(raw: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for key in ("on_start", "on_success", "on_failure"):
        value = raw.get(key)
        if isinstance(value, list):
            found[key] = [v for v in value if isinstance(v, dict)]
    return found


def _structure_problems(exc: ValidationError, raw: dict[str, Any]) -> list[str]:
    problems = []
    items = raw.get("nodes")
    nodes = items if isinstance(items, list) else []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if len(loc) >= 2 and loc[0] == "nodes" and isinstance(loc[1], int):
            index = loc[1]
            node = nodes[index] if index < len(nodes) else None
            node_id = node.get("id") if isinstance(node, dict) else None
            where = f"node {node_id!r}" if isinstance(node_id, str) else f"node #{index + 1}"
            field_path = ".".join(str(p) for p in loc[2:])
            problems.append(f"{where}: {field_path + ': ' if field_path else ''}{err['msg']}")
        elif loc == ["version"] and err["type"] == "missing":
            problems.append('version: missing (add "version": "1.0")')
        elif len(loc) >= 2 and loc[0] == "parameters":
            problems.append(_parameter_problem(loc, err))
        elif len(loc) >= 2 and loc[0] == "triggers" and isinstance(loc[1], int):
            # the tagged union puts the trigger's kind into the path: `triggers.0.cron.timezone`
            rest = loc[3:] if len(loc) > 2 and loc[2] in _TRIGGER_KINDS else loc[2:]
            field_path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest)
            problems.append(f"triggers[{loc[1]}]{field_path}: {_message(err)}")
        else:
            path = ".".join(str(p) for p in loc) or "definition"
            problems.append(f"{path}: {err['msg']}")
    return problems


_TRIGGER_KINDS = frozenset({"cron", "interval_seconds", "event", "webhook"})


def _message(err: ErrorDetails) -> str:
    return err["msg"].removeprefix("Value error, ")


def _parameter_problem(loc: list[Any], err: ErrorDetails) -> str:
    """`parameter 'workers': default: 20 is over the maximum 16`, naming the parameter first."""
    if loc[-1] == "[key]":
        return (
            f"parameter {str(loc[1])[:64]!r}: a name is letters, digits and _, not starting with a digit, "
            "at most 64 characters (templates read it as params.<name>)"
        )
    field_path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc[2:]).lstrip(".")
    return f"parameter {str(loc[1])!r}: {field_path + ': ' if field_path else ''}{_message(err)}"


def _as_init(error: ErrorDetails) -> InitErrorDetails:
    """An error as `from_exception_data` takes it back (it makes the message again from type and ctx)."""
    details = InitErrorDetails(type=error["type"], loc=error["loc"], input=error["input"])
    if "ctx" in error:
        details["ctx"] = error["ctx"]
    return details


def _node_problems(
    node: Node,
    ids: set[str] | None,
    context: dict[str, Any] | None = None,
    params: set[str] | None = None,
) -> list[str]:
    where = f"node {node.id!r}"
    problems: list[str] = []
    try:
        module = get_node_type(node.type)
    except DefinitionError as exc:
        return [f"{where}: {exc}"]
    try:
        # strict: a number or a flag written as a string is reported, not coerced
        module.Config.model_validate(node.config, strict=True, context=context)
    except ValidationError as exc:
        # a value that is a template or a reference is only known at run time
        errors = [_as_init(e) for e in exc.errors(include_url=False) if not _is_dynamic_input(e.get("input"))]
        if errors:
            lines = format_validation_error(ValidationError.from_exception_data(exc.title, errors))
            problems.extend(f"{where}: {line}" for line in lines)
    problems.extend(f"{where}: {p}" for p in config_problems(node.type, node.config, ids, params))
    if node.when is not None:
        problems.extend(f"{where}: when: {p}" for p in expression_problems(node.when, ids, True, params))
    return problems


def _policy_problems(where: str, config: dict[str, Any], ids: set[str], params: set[str] | None) -> list[str]:
    """A pipeline-level notification is a notify node config: validate it as one."""
    probe = Node(id="policy", type="notify", config=config)
    return [p.replace("node 'policy'", where, 1) for p in _node_problems(probe, ids, None, params)]


def _is_dynamic_input(value: Any) -> bool:
    return isinstance(value, str) and has_dynamic(value)
