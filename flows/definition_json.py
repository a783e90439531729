"""A definition file's JSON: read within the size, depth and encoding limits, errors naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flows.limits import MAX_DEFINITION_BYTES, LimitError, check_depth, read_limited
from nodes.errors import DefinitionError

__all__ = ["parse_json", "read_json"]


def read_json(path: Path) -> dict[str, Any]:
    """Parse a definition file; errors say which file and where (and which limit, if one is hit)."""
    try:
        text = read_limited(path, MAX_DEFINITION_BYTES, "Config file")
    except LimitError as exc:
        raise DefinitionError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"Invalid JSON in config file: {path}: not UTF-8 ({exc.reason})") from None
    return parse_json(text, path)


def parse_json(text: str | bytes, path: Path) -> dict[str, Any]:
    """A definition file's text (or bytes) as its JSON object; errors name the file and where."""
    try:
        if isinstance(text, bytes):
            text = text.decode("utf-8")
        check_depth(text, f"Config file {path}")
        data = json.loads(text)
    except LimitError as exc:
        raise DefinitionError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise DefinitionError(f"Invalid JSON in config file: {path}: not UTF-8 ({exc.reason})") from None
    except json.JSONDecodeError as exc:
        raise DefinitionError(
            f"Invalid JSON in config file: {path}: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise DefinitionError(f"Invalid JSON in config file: {path}: the top level must be an object")
    return data
