"""Run-time resolution of config strings: `${ENV}` / `${secret:NAME}` references and `{{ }}` templates.

References are substituted after the template is rendered, through placeholders, so
text coming from an alert payload can never name an environment variable, and a
secret value never passes through Jinja. Every resolved value is recorded in the
run's `Secrets` so it can be scrubbed from anything shown.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

from nodes.base import REDACTED, NodeContext
from nodes.errors import TemplateError

__all__ = [
    "MAX_RENDERED_CHARS",
    "REFERENCE",
    "check_template",
    "has_dynamic",
    "mask_references",
    "referenced_names",
    "render_template",
    "resolve",
    "template_ast",
]

# ${NAME}, ${NAME:-default}, ${secret:NAME}
REFERENCE = re.compile(r"\$\{(?:(secret):)?([A-Za-z_][A-Za-z0-9_.\-/]*)(?::-([^}]*))?\}")
_PLACEHOLDER = "\x00opsflow-ref-{}\x00"
_PLACEHOLDER_RE = re.compile("\x00opsflow-ref-(\\d+)\x00")


def has_dynamic(value: Any) -> bool:
    """True when `value` holds a template or a reference anywhere (decided once, at load)."""
    if isinstance(value, str):
        return "{{" in value or "{%" in value or "${" in value
    if isinstance(value, dict):
        return any(has_dynamic(v) for v in value.values())
    if isinstance(value, list):
        return any(has_dynamic(v) for v in value)
    return False


def referenced_names(value: Any) -> list[str]:
    """Names of the environment variables and secrets `value` refers to (`secret:NAME` for blocks)."""
    found: list[str] = []
    if isinstance(value, str):
        for kind, name, _ in REFERENCE.findall(value):
            found.append(f"secret:{name}" if kind else name)
    elif isinstance(value, dict):
        for v in value.values():
            found.extend(referenced_names(v))
    elif isinstance(value, list):
        for v in value:
            found.extend(referenced_names(v))
    return list(dict.fromkeys(found))


def mask_references(value: Any) -> Any:
    """`value` with every `${...}` reference shown as ***, for dry-run and describe."""
    if isinstance(value, str):
        return REFERENCE.sub(REDACTED, value)
    if isinstance(value, dict):
        return {k: mask_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_references(v) for v in value]
    return value


def resolve(value: Any, ctx: NodeContext, path: str = "config") -> Any:
    """Resolve templates and references in every string of `value` (dicts and lists walked)."""
    if isinstance(value, str):
        return _resolve_string(value, ctx, path)
    if isinstance(value, dict):
        return {k: resolve(v, ctx, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, ctx, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _resolve_string(text: str, ctx: NodeContext, path: str) -> str:
    refs: list[str] = []
    if "${" in text:

        def hold(match: re.Match[str]) -> str:
            refs.append(_lookup(match, ctx, path))
            return _PLACEHOLDER.format(len(refs) - 1)

        text = REFERENCE.sub(hold, text)
    if "{{" in text or "{%" in text:
        text = render_template(text, ctx.data(), where=f"node {ctx.node_id!r} {path}")
    if refs:
        text = _PLACEHOLDER_RE.sub(lambda m: refs[int(m.group(1))], text)
    return text


def _lookup(match: re.Match[str], ctx: NodeContext, path: str) -> str:
    kind, name, default = match.group(1), match.group(2), match.group(3)
    where = f"node {ctx.node_id!r} {path}"
    if kind == "secret":
        if ctx.secret_lookup is None:
            raise TemplateError(f"{where}: secret {name!r} cannot be read outside a Prefect run")
        try:
            value = ctx.secret_lookup(name)
        except Exception as exc:
            raise TemplateError(f"{where}: secret block {name!r} could not be loaded: {exc}") from exc
    else:
        value = os.environ.get(name)
        if value is None or value == "":
            if default is None:
                raise TemplateError(f"{where}: environment variable {name} is not set")
            return default
    value = str(value)
    ctx.secrets.add(value)
    return value


# the most text one rendered string may hold; larger output fails the node, not the host
MAX_RENDERED_CHARS = 1024 * 1024
# str methods whose first argument is a width: `'a'.ljust(10**9)` would allocate it whole
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


@lru_cache(maxsize=512)
def _compile(source: str):
    from jinja2 import TemplateSyntaxError

    try:
        return _environment().from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message} (line {exc.lineno})") from exc


def check_template(source: str) -> str | None:
    """The syntax problem of `source` (bad syntax, an unknown filter or test), or None."""
    try:
        _compile(source)
    except TemplateError as exc:
        return exc.message
    return None


def template_ast(source: str):
    """The parsed template (jinja2 nodes), for load-time checks of the names it uses."""
    return _environment().parse(source)


def _too_big(size: int) -> None:
    if size > MAX_RENDERED_CHARS:
        raise TemplateError(f"rendered output over {MAX_RENDERED_CHARS} characters (the cap)")


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, bytes, list, tuple)) else None


@lru_cache(maxsize=1)
def _environment():
    import json

    from jinja2 import ChainableUndefined, UndefinedError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class StrictUndefined(ChainableUndefined):
        """A missing name fails the render; `| default(...)` and `is defined` still see it.

        Chaining (`nodes.x.y | default('n/a')`) keeps working; printing, testing or
        iterating a missing value raises (a sandbox escape raises its SecurityError).
        """

        def _fail(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return ChainableUndefined._fail_with_undefined_error(self, *args, **kwargs)
            except UndefinedError as exc:
                exc.missing_name = self._undefined_name  # for the error to name the whole path
                raise

        __str__ = __iter__ = __len__ = __bool__ = __eq__ = __ne__ = __hash__ = __contains__ = _fail

    class Environment(ImmutableSandboxedEnvironment):
        """The sandbox, refusing arithmetic that would build a huge value before the size cap sees it."""

        intercepted_binops = frozenset({"*", "**", "+"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    size = _size(seq)
                    if size is not None and isinstance(count, int):
                        _too_big(size * max(count, 0))
            elif operator == "+":
                sizes = (_size(left), _size(right))
                if None not in sizes:
                    _too_big(sizes[0] + sizes[1])
            elif operator == "**" and isinstance(right, int) and isinstance(left, int) and abs(left) > 1:
                if right > 4096:
                    raise TemplateError(f"exponent {right} too large")
            return super().call_binop(context, operator, left, right)

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja2's signature
            if getattr(__obj, "__name__", None) in _WIDTH_METHODS and isinstance(
                getattr(__obj, "__self__", None), str
            ):
                for arg in (*args, *kwargs.values()):
                    if isinstance(arg, int):
                        _too_big(arg)
            return super().call(__context, __obj, *args, **kwargs)

    def finalize(value: Any) -> Any:
        """Lists and objects print as JSON, not as Python's repr."""
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, default=str, ensure_ascii=False)
        return value

    env = Environment(undefined=StrictUndefined, autoescape=False, finalize=finalize)
    env.filters["tojson"] = _tojson
    for name in ("center", "indent"):
        env.filters[name] = _capped_width(env.filters[name])
    return env


def _capped_width(filter_fn):
    def capped(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int):
            _too_big(width)
        return filter_fn(value, width, *args, **kwargs)

    return capped


def _tojson(value: Any, indent: int | None = None) -> str:
    import json

    return json.dumps(value, indent=indent, default=str, ensure_ascii=False)


def render_template(source: str, data: dict[str, Any], where: str = "template") -> str:
    """Render a Jinja2 template in the sandbox, strictly and at most MAX_RENDERED_CHARS long.

    Errors name `where` (the node and field) and, for an undefined value, the name.
    """
    from jinja2 import TemplateError as JinjaError
    from jinja2 import UndefinedError
    from jinja2.sandbox import SecurityError

    try:
        parts: list[str] = []
        size = 0
        for part in _compile(source).generate(**data):
            size += len(part)
            _too_big(size)
            parts.append(part)
        return "".join(parts)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"{where}: unsafe template refused: {exc}") from exc
    except UndefinedError as exc:
        path = _path_of(source, getattr(exc, "missing_name", None))
        shown = f"`{path}` is undefined" if path else f"undefined value: {exc}"
        if path and str(exc) != f"{path!r} is undefined":
            shown += f" ({exc})"
        raise TemplateError(f"{where}: {shown}; use `| default(...)` if it is optional") from exc
    except JinjaError as exc:
        raise TemplateError(f"{where}: template error: {exc}") from exc
    except Exception as exc:  # errors raised by expressions (e.g. 1/0) inside the template
        raise TemplateError(f"{where}: template error: {type(exc).__name__}: {exc}") from exc


def _path_of(source: str, name: Any) -> str | None:
    """The dotted path in `source` that ends in the undefined `name` (`nodes.analyze.summry`)."""
    if not isinstance(name, str):
        return None
    from jinja2 import nodes

    def dotted(node: Any) -> str | None:
        if isinstance(node, nodes.Name):
            return node.name
        if isinstance(node, nodes.Getattr):
            base = dotted(node.node)
            return f"{base}.{node.attr}" if base else None
        if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            base = dotted(node.node)
            return f"{base}[{node.arg.value!r}]" if base else None
        return None

    for node in template_ast(source).find_all((nodes.Getattr, nodes.Getitem, nodes.Name)):
        if isinstance(node, nodes.Getitem):
            last = node.arg.value if isinstance(node.arg, nodes.Const) else None
        else:
            last = node.attr if isinstance(node, nodes.Getattr) else node.name
        if last == name:
            path = dotted(node)
            if path:
                return path
    return None
