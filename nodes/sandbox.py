"""The Jinja2 sandbox templates render in: strict about missing names, capped in size.

A template comes from a definition and sees alert text, so it must neither escape the
sandbox nor take the host down: `{{ 'a' * 10**9 }}` is refused before the string is
built (arithmetic, padding, replace, join and % formatting are checked), and rendered
output stops at MAX_RENDERED_CHARS.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from nodes.errors import TemplateError

__all__ = ["MAX_RENDERED_CHARS", "check_template", "render_template", "template_ast"]

# the most text one rendered string (or any value built on the way) may hold
MAX_RENDERED_CHARS = 1024 * 1024
# str methods whose arguments say how big the result is
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
# a width or precision of 7+ digits in a %-format or str.format spec
_HUGE_SPEC = re.compile(r"(?:%[^a-zA-Z%]*|\{[^{}]*[:!][^{}]*)\d{7}")
_NESTED_SPEC = re.compile(r"\{[^{}]*:[^{}]*\{")


def _too_big(size: int) -> None:
    if size > MAX_RENDERED_CHARS:
        raise TemplateError(f"rendered output over {MAX_RENDERED_CHARS} characters (the cap)")


def _weight(value: Any) -> int:
    """About how many characters `value` takes as text; stops counting past the cap."""
    total, stack = 0, [value]
    while stack and total <= MAX_RENDERED_CHARS:
        current = stack.pop()
        if isinstance(current, (str, bytes)):
            total += len(current)
        elif isinstance(current, (list, tuple)):
            total += len(current)
            stack.extend(current)
        elif isinstance(current, dict):
            total += len(current)
            stack.extend(current.keys())
            stack.extend(current.values())
        else:
            total += 1
    return total


def _sized(value: Any) -> bool:
    return isinstance(value, (str, bytes, list, tuple))


def _check_spec(text: Any, args: Any = ()) -> None:
    """Refuse a %-format or str.format whose width or precision would be huge.

    A width may also come from an argument (`%*s`, `{:>{w}}`): then no int argument may be huge.
    """
    if not isinstance(text, str):
        return
    if _HUGE_SPEC.search(text):
        raise TemplateError("a format width or precision that large is refused")
    if "*" in text or _NESTED_SPEC.search(text):
        values = (
            args.values() if isinstance(args, dict) else args if isinstance(args, (list, tuple)) else [args]
        )
        if any(isinstance(v, int) and abs(v) > MAX_RENDERED_CHARS for v in values):
            raise TemplateError("a format width or precision that large is refused")


def _check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and len(new) > len(old):
        hits = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        _too_big(len(text) + hits * (len(new) - len(old)))


@lru_cache(maxsize=512)
def _compile(source: str, json_safe: bool = False):
    from jinja2 import TemplateSyntaxError

    try:
        return _environment(json_safe).from_string(source)
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


class _JSON(str):
    """Text `tojson` already encoded: the JSON-safe finalizer passes it through unchanged."""


def _json_safe(value: Any) -> Any:
    """`{{ x }}` in a JSON template: a string as JSON string content (the template supplies
    the quotes), anything else as JSON, so a quote in alert text cannot inject a field."""
    if isinstance(value, _JSON):
        return value
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)[1:-1]
    if value is None or isinstance(value, bool | int | float | list | tuple | dict):
        return json.dumps(value, default=str, ensure_ascii=False)
    return json.dumps(str(value), ensure_ascii=False)[1:-1]


@lru_cache(maxsize=2)
def _environment(json_safe: bool = False):
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
                # for the error to name the whole path; UndefinedError declares no such field
                vars(exc)["missing_name"] = self._undefined_name
                raise

        __str__ = __iter__ = __len__ = __bool__ = __eq__ = __ne__ = __hash__ = __contains__ = _fail

    class Environment(ImmutableSandboxedEnvironment):
        """The sandbox, refusing work that would build a huge value before the output cap sees it."""

        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def call_binop(self, context, operator, left, right):
            if operator == "*":
                for seq, count in ((left, right), (right, left)):
                    if _sized(seq) and isinstance(count, int):
                        _too_big(_weight(seq) * max(count, 0))
            elif operator == "+" and _sized(left) and _sized(right):
                _too_big(_weight(left) + _weight(right))
            elif operator == "%":
                _check_spec(left, right)
            elif operator == "**" and isinstance(right, int) and isinstance(left, int) and abs(left) > 1:
                if right > 4096:
                    raise TemplateError(f"exponent {right} too large")
            return super().call_binop(context, operator, left, right)

        def wrap_str_format(self, value: Any) -> Any:
            """`'{:>1000000000}'.format(x)` is refused when the method is looked up."""
            if getattr(value, "__name__", None) not in ("format", "format_map"):
                return super().wrap_str_format(value)
            text = getattr(value, "__self__", None)
            _check_spec(text)
            wrapped = super().wrap_str_format(value)
            if wrapped is None:
                return None

            def checked(*args: Any, **kwargs: Any) -> str:
                _check_spec(
                    text,
                    [*args, *kwargs.values(), *(a for d in args if isinstance(d, dict) for a in d.values())],
                )
                return wrapped(*args, **kwargs)

            return checked

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - jinja2's signature
            owner, name = getattr(__obj, "__self__", None), getattr(__obj, "__name__", None)
            if isinstance(owner, str):
                if name in _WIDTH_METHODS:
                    for arg in (*args, *kwargs.values()):
                        if isinstance(arg, int):
                            _too_big(arg)
                elif name == "replace":
                    _check_replace(owner, *args[:3])
                elif name == "join" and args:
                    _too_big(_weight(args[0]) + len(owner) * _weight(args[0]))
            return super().call(__context, __obj, *args, **kwargs)

    def finalize(value: Any) -> Any:
        """Lists and objects print as JSON, not as Python's repr; a function or class is a mistake."""
        if isinstance(value, (dict, list, tuple)):
            return json.dumps(value, default=str, ensure_ascii=False)
        if callable(value) and not isinstance(value, ChainableUndefined):
            raise TemplateError(f"{getattr(value, '__name__', 'a callable')!r} is a function, not a value")
        return value

    def finalize_json(value: Any) -> Any:
        return _json_safe(finalize(value) if not isinstance(value, (dict, list, tuple)) else value)

    env = Environment(
        undefined=StrictUndefined, autoescape=False, finalize=finalize_json if json_safe else finalize
    )
    env.filters["tojson"] = _tojson
    _guard_filters(env.filters)
    return env


def _guard_filters(filters: dict[str, Any]) -> None:
    """Wrap the filters whose result size their arguments decide."""
    center, indent, replace, join, fmt = (
        filters[n] for n in ("center", "indent", "replace", "join", "format")
    )

    def capped_center(value: Any, width: Any = 80) -> Any:
        if isinstance(width, int):
            _too_big(width)
        return center(value, width)

    def capped_indent(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int):
            _too_big(width * max(1, str(value).count("\n") + 1))
        return indent(value, width, *args, **kwargs)

    def capped_replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
        _check_replace(value, old, new, -1 if count is None else count)
        return replace(eval_ctx, value, old, new, count)

    def capped_join(eval_ctx: Any, value: Any, d: Any = "", attribute: Any = None) -> Any:
        weight = _weight(value) if isinstance(value, (list, tuple)) else 0
        _too_big(weight + (len(d) if isinstance(d, str) else 0) * weight)
        return join(eval_ctx, value, d, attribute)

    def capped_format(value: Any, *args: Any, **kwargs: Any) -> Any:
        _check_spec(value, [*args, *kwargs.values()])
        return fmt(value, *args, **kwargs)

    from jinja2.utils import pass_eval_context

    filters.update(
        center=capped_center,
        indent=capped_indent,
        replace=pass_eval_context(capped_replace),
        join=pass_eval_context(capped_join),
        format=capped_format,
    )


def _tojson(value: Any, indent: int | None = None) -> str:
    return _JSON(json.dumps(value, indent=indent, default=str, ensure_ascii=False))


def render_template(
    source: str, data: dict[str, Any], where: str = "template", *, json_safe: bool = False
) -> str:
    """Render a Jinja2 template in the sandbox, strictly and at most MAX_RENDERED_CHARS long.

    Errors name `where` (the node and field) and, for an undefined value, its path.
    `json_safe` is for templates of a JSON document: each `{{ }}` is JSON-encoded.
    """
    from jinja2 import TemplateError as JinjaError
    from jinja2 import UndefinedError
    from jinja2.sandbox import SecurityError

    try:
        parts: list[str] = []
        size = 0
        for part in _compile(source, json_safe).generate(**data):
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
