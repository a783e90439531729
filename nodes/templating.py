"""Run-time resolution of config strings: `${ENV}` / `${secret:NAME}` references and `{{ }}` templates.

References are substituted after the template is rendered, through placeholders, so
text coming from an alert payload can never name an environment variable, and a
secret value never passes through Jinja. Every resolved value is recorded in the
run's `Secrets` so it can be scrubbed from anything shown.
"""

from __future__ import annotations

import os
import re
from typing import Any

from nodes.base import REDACTED, NodeContext, is_secret_setting
from nodes.errors import TemplateError
from nodes.sandbox import MAX_RENDERED_CHARS, check_template, render_template, template_ast

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
        try:
            text = render_template(text, ctx.data(), where=f"node {ctx.node_id!r} {path}")
        except TemplateError:
            if not ctx.dry_run:
                raise
            # a dry run has no node outputs yet: the preview shows the template as written
    if refs:
        text = _PLACEHOLDER_RE.sub(lambda m: refs[int(m.group(1))], text)
    return text


def _lookup(match: re.Match[str], ctx: NodeContext, path: str) -> str:
    kind, name, default = match.group(1), match.group(2), match.group(3)
    where = f"node {ctx.node_id!r} {path}"
    value: str | None
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
    if kind == "secret" or is_secret_setting(name, value):
        ctx.secrets.add(value)
    return value
