"""Size and nesting limits for what people hand opsflow: definitions, payloads, env files.

Checked before parsing, so a 20,000-deep JSON array is a one-line error instead of a
RecursionError, and a huge file is refused without being read whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nodes.errors import OpsflowError

__all__ = [
    "MAX_DEFINITION_BYTES",
    "MAX_DEPTH",
    "MAX_ENV_FILE_BYTES",
    "MAX_NODES",
    "MAX_PAYLOAD_BYTES",
    "LimitError",
    "check_depth",
    "check_payload",
    "check_value_depth",
    "read_limited",
]

MAX_DEFINITION_BYTES = 1024 * 1024
MAX_PAYLOAD_BYTES = 1024 * 1024  # as the receiver's 413
MAX_ENV_FILE_BYTES = 256 * 1024
MAX_DEPTH = 64  # nesting of JSON arrays/objects; real definitions and alerts stay under 10
MAX_NODES = 1000

# a JSON string (skipped whole, so brackets inside it do not count) or one bracket
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class LimitError(OpsflowError):
    """An input is too large, too deeply nested, or not a file."""


def read_limited(path: Path, max_bytes: int, what: str) -> str:
    """The UTF-8 text of `path`; LimitError when it is a directory, missing or over `max_bytes`.

    Reads at most `max_bytes + 1` bytes, so an oversized file is never loaded whole.
    UnicodeDecodeError is left to the caller, which knows how it names the file.
    """
    if path.is_dir():
        raise LimitError(f"{what} is a directory: {path}")
    try:
        with path.open("rb") as handle:
            data = handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise LimitError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise LimitError(f"{what} cannot be read: {path}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise LimitError(f"{what} {path} is over {max_bytes} bytes (the limit)")
    return data.decode("utf-8")


def check_depth(text: str, what: str, limit: int = MAX_DEPTH) -> None:
    """LimitError when JSON `text` nests arrays/objects deeper than `limit`."""
    depth = 0
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > limit:
                raise LimitError(f"{what}: nested more than {limit} levels deep (the limit)")
        elif token in "]}":
            depth -= 1


def check_value_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """The same limit for a value already parsed (an inline definition), walked without recursion."""
    stack = [(value, 1)]
    while stack:
        current, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(current, dict):
            children = current.values()
        elif isinstance(current, list):
            children = current
        else:
            continue
        if depth > limit:
            raise LimitError(f"{what}: nested more than {limit} levels deep (the limit)")
        stack.extend((child, depth + 1) for child in children)


def check_payload(text: str, what: str) -> None:
    """An alert payload given as text: at most MAX_PAYLOAD_BYTES, at most MAX_DEPTH deep."""
    if len(text) > MAX_PAYLOAD_BYTES or len(text.encode("utf-8", "replace")) > MAX_PAYLOAD_BYTES:
        raise LimitError(f"{what}: over {MAX_PAYLOAD_BYTES} bytes (the limit)")
    check_depth(text, what)
