"""Load-time checks of what a node's expressions and templates would do at run time.

Jinja syntax and unknown filters, JMESPath functions that do not exist, `nodes.<id>`
and `source_node` naming no node (with a "did you mean"), `!x.y` where `!(x.y)` was
meant, and URL fields that are not http(s). Each problem is one line naming the field.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from nodes.jmes import compile_expression
from nodes.templating import check_template, has_dynamic, template_ast

__all__ = ["HTTP_URL_FIELDS", "config_problems", "expression_problems"]

# config keys (at any depth) whose value is an http(s) URL
HTTP_URL_FIELDS = frozenset({"url", "webhook_url", "api_url", "events_url", "base_url"})
# config keys holding JMESPath: condition `if`; transform `extract`, `expression`, `mapping` values
_DICT_METHODS = frozenset({"items", "keys", "values", "get"})
_EXPRESSION_KEYS = {"condition": ("if",), "transform": ("extract", "expression")}


def _functions() -> frozenset[str]:
    from jmespath.functions import Functions

    return frozenset(Functions.FUNCTION_TABLE)


def _unknown_node(node_id: str, ids: set[str]) -> str:
    close = difflib.get_close_matches(node_id, sorted(ids), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"names node {node_id!r}, which is not a node of this definition{hint}"


def expression_problems(
    expression: str, ids: set[str] | None, syntax: bool = True, params: set[str] | None = None
) -> list[str]:
    """What is wrong with a JMESPath expression; `ids` (`params`) None skips the node-id (parameter) check.

    `syntax=False` leaves a compile error to the config model, which reports it itself.
    """
    try:
        parsed = compile_expression(expression).parsed
    except ValueError as exc:
        return [str(exc)] if syntax else []
    problems: list[str] = []
    known = _functions()
    for item in _walk_ast(parsed):
        kind, children = item.get("type"), item.get("children") or []
        if kind == "function_expression" and item.get("value") not in known:
            name = item.get("value")
            close = difflib.get_close_matches(str(name), sorted(known), n=1)
            hint = f" (did you mean {close[0]}()?)" if close else ""
            problems.append(f"JMESPath {expression!r}: unknown function {name}(){hint}")
        elif kind == "subexpression" and children and children[0].get("type") == "not_expression":
            meant = _dotted([*children[0].get("children", []), *children[1:]]) or "a.b"
            problems.append(
                f"JMESPath {expression!r}: `!` binds tighter than `.`, so it negates only the first "
                f"name: write !({meant}) to negate {meant}"
            )
        elif kind == "subexpression" and len(children) >= 2:
            first, second = children[0], children[1]
            if first.get("type") != "field" or second.get("type") != "field":
                continue
            if first.get("value") == "nodes" and ids is not None and second.get("value") not in ids:
                problems.append(f"JMESPath {expression!r} {_unknown_node(second['value'], ids)}")
            elif first.get("value") == "params" and params is not None and second.get("value") not in params:
                problems.append(f"JMESPath {expression!r} {_unknown_parameter(second['value'], params)}")
    return list(dict.fromkeys(problems))


def _unknown_parameter(name: str, params: set[str]) -> str:
    if not params:
        return f"reads params.{name}, but the definition declares no parameters"
    close = difflib.get_close_matches(name, sorted(params), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"reads params.{name}, which is not a parameter of this definition{hint}"


def _dotted(parts: list[dict[str, Any]]) -> str | None:
    """`a.b.c` for a chain of plain fields, else None."""
    if parts and all(p.get("type") == "field" for p in parts):
        return ".".join(str(p.get("value")) for p in parts)
    return None


def _walk_ast(node: Any) -> Iterator[dict[str, Any]]:
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            yield current
            stack.extend(current.get("children") or [])


def template_problems(text: str, ids: set[str] | None, params: set[str] | None = None) -> list[str]:
    """Syntax errors and unknown filters, `nodes.<id>` naming no node and `params.<name>` no parameter."""
    problem = check_template(text)
    if problem:
        return [problem]
    if ids is None and params is None:
        return []
    from jinja2 import nodes as jinja_nodes

    problems = []
    for item in template_ast(text).find_all((jinja_nodes.Getattr, jinja_nodes.Getitem)):
        parent = item.node
        if not isinstance(parent, jinja_nodes.Name) or parent.name not in ("nodes", "params"):
            continue
        name = _attribute(item)
        if name is None:
            continue
        if parent.name == "params" and params is not None and name not in params:
            problems.append(f"template {_unknown_parameter(name, params)}")
        elif parent.name == "nodes" and ids is not None and name not in ids:
            problems.append(f"template {_unknown_node(name, ids)}")
    return list(dict.fromkeys(problems))


def _attribute(item: Any) -> str | None:
    """The name `x.name` or `x['name']` reads (None for a computed key, or a dict method:
    `nodes.items()` walks the outputs)."""
    from jinja2 import nodes as jinja_nodes

    if isinstance(item, jinja_nodes.Getattr):
        return None if item.attr in _DICT_METHODS else item.attr
    if isinstance(item.arg, jinja_nodes.Const) and isinstance(item.arg.value, str):
        return item.arg.value
    return None


def config_problems(
    node_type: str, config: dict[str, Any], ids: set[str] | None, params: set[str] | None = None
) -> list[str]:
    """Every template, expression, node or parameter reference and URL problem in one node's config."""
    problems: list[str] = []
    for path, key, value in _strings(config, "config"):
        if "{{" in value or "{%" in value:
            problems.extend(f"{path}: {p}" for p in template_problems(value, ids, params))
        if key in HTTP_URL_FIELDS and not has_dynamic(value):
            problem = _url_problem(value)
            if problem:
                problems.append(f"{path}: {problem}")
    for key in _EXPRESSION_KEYS.get(node_type, ()):
        if isinstance(config.get(key), str):
            problems.extend(
                f"config.{key}: {p}" for p in expression_problems(config[key], ids, False, params)
            )
    if node_type == "transform":
        mapping = config.get("mapping")
        for name, expr in mapping.items() if isinstance(mapping, dict) else ():
            if isinstance(expr, str):
                problems.extend(
                    f"config.mapping.{name}: {p}" for p in expression_problems(expr, ids, False, params)
                )
        source = config.get("source_node")
        if ids is not None and isinstance(source, str) and not has_dynamic(source) and source not in ids:
            problems.append(f"config.source_node: {_unknown_node(source, ids)}")
    if node_type == "check":
        checks = config.get("checks")
        for index, check in enumerate(checks if isinstance(checks, list) else ()):
            metric = check.get("metric") if isinstance(check, dict) else None
            if isinstance(metric, str):
                where = f"config.checks[{index}].metric"
                problems.extend(f"{where}: {p}" for p in expression_problems(metric, ids, False, params))
    if node_type == "command":
        problems.extend(_program_choice_problems(config))
    return problems


# variables that decide which program or code a process runs: a template (payload or parameter
# text) must not set them, or the payload would choose the executable `command[0]` keeps written
_LOADER_VARIABLES = re.compile(
    r"^(PATH|LD_\w+|DYLD_\w+|PYTHON\w*|NODE_OPTIONS|NODE_PATH|PERL5?LIB|PERL5OPT|RUBYOPT|RUBYLIB"
    r"|BASH_ENV|ENV|SHELLOPTS|IFS|GCONV_PATH)$"
)


def _program_choice_problems(config: dict[str, Any]) -> list[str]:
    """A `command` node's `cwd` and loader variables are written out: the payload never picks the program."""
    problems = []
    cwd = config.get("cwd")
    if isinstance(cwd, str) and _templated(cwd):
        problems.append(
            "config.cwd: no {{ }} templates: the working directory decides which program a relative "
            "command[0] names, and the payload never chooses the program"
        )
    env = config.get("env")
    for name, value in env.items() if isinstance(env, dict) else ():
        if (
            isinstance(name, str)
            and _LOADER_VARIABLES.match(name)
            and isinstance(value, str)
            and _templated(value)
        ):
            problems.append(
                f"config.env.{name}: no {{{{ }}}} templates: {name} decides which program or code runs, "
                "and the payload never chooses it"
            )
    artifacts = config.get("artifacts")
    for index, artifact in enumerate(artifacts if isinstance(artifacts, list) else ()):
        for key in ("path", "schema"):
            value = artifact.get(key) if isinstance(artifact, dict) else None
            if isinstance(value, str) and (_templated(value) or "${" in value):
                problems.append(
                    f"config.artifacts[{index}].{key}: written out, not a template or reference: "
                    "the payload never chooses which file is read"
                )
    return problems


def _templated(value: str) -> bool:
    return "{{" in value or "{%" in value


def _url_problem(value: str) -> str | None:
    """Why `value` is not an http(s) URL (the value itself is never shown: URLs embed tokens)."""
    try:
        parts = urlsplit(value.strip())
    except ValueError:
        return "not a valid URL"
    if parts.scheme.lower() not in ("http", "https"):
        shown = f"scheme {parts.scheme!r}" if parts.scheme and len(parts.scheme) < 20 else "no scheme"
        return f"must be an http:// or https:// URL ({shown})"
    if not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    return None


def _strings(value: Any, path: str, key: str | None = None) -> Iterator[tuple[str, str | None, str]]:
    if isinstance(value, str):
        yield path, key, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, f"{path}.{k}", str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, f"{path}[{i}]", key)
