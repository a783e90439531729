"""JMESPath, compiled once per expression, with errors that say which expression failed."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

__all__ = ["compile_expression", "search", "truthy"]


@lru_cache(maxsize=1024)
def compile_expression(expression: str):
    """Compile `expression`; raise ValueError with JMESPath's own message when it is invalid."""
    import jmespath
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.compile(expression)
    except JMESPathError as exc:
        raise ValueError(f"invalid JMESPath {expression!r}: {str(exc).splitlines()[0]}") from None


def search(expression: str, data: Any) -> Any:
    """Evaluate `expression` over `data`; ValueError (naming it) if it fails at run time."""
    from jmespath.exceptions import JMESPathError

    try:
        return compile_expression(expression).search(data)
    except JMESPathError as exc:
        raise ValueError(f"JMESPath {expression!r} failed: {exc}") from None


def truthy(value: Any) -> bool:
    """JMESPath truthiness: only null, false, "", [] and {} are false (0 and 0.0 are true).

    Python's `in (None, False, ...)` would call 0 false, since 0 == False.
    """
    if value is None or value is False:
        return False
    if isinstance(value, (str, list, dict)):
        return len(value) > 0
    return True
