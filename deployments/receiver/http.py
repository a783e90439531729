"""Reading a webhook body safely: JSON only, at most 1 MiB, and errors a sender can act on."""

from __future__ import annotations

import json
import math
import re
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from starlette.requests import Request

from nodes.errors import OpsflowError

if TYPE_CHECKING:
    from fastapi.exceptions import RequestValidationError

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "ReceiverError",
    "first_error",
    "is_json",
    "kind_of",
    "read_json",
    "strip_nul",
]

MAX_BODY_BYTES = 1024 * 1024
# Prefect walks a run's parameters recursively and fails a few hundred levels down;
# real alert payloads are under ten levels deep
MAX_DEPTH = 64

# a `\uD800`-`\uDFFF` escape: JSON allows it, but alone it is no character and cannot be stored or sent on
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# the only way JSON text holds a NUL character (a raw one is invalid JSON)
_NUL_ESCAPE = "\\u0000"


class ReceiverError(OpsflowError):
    """An HTTP answer other than success: status, a message for the sender, extra headers."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def kind_of(value: Any) -> str:
    """What a JSON value is, for "expected an object, got ..." answers."""
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def first_error(exc: ValidationError | RequestValidationError) -> str:
    """A pydantic or FastAPI validation error as one line: `field.path: message; ...`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


def is_json(content_type: str | None) -> bool:
    """`application/json` or any `+json` type, whatever its parameters (charset=...)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    return media == "application/json" or ("/" in media and media.endswith("+json"))


async def read_json(request: Request, *, allow_empty: bool = False) -> tuple[str, Any]:
    """The body's text and its JSON value; an empty body is `None` when `allow_empty`.

    The declared Content-Length is checked first, then the bytes actually received
    (a sender may lie or stream chunked), so no more than 1 MiB is ever held.
    NUL characters (`\\u0000`) are stripped from every key and string, however deep:
    PostgreSQL (Prefect's database, and the journal's) stores no NUL in text, so such a
    payload would be refused with a 503 on every retry, for ever.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # not "²": str.isdigit takes it
            raise ReceiverError(400, f"Content-Length is not a number: {declared[:32]!r}")
        digits = declared.lstrip("0") or "0"
        if len(digits) > len(str(MAX_BODY_BYTES)) or int(digits) > MAX_BODY_BYTES:
            raise ReceiverError(413, f"body of {digits[:32]} bytes is over the limit of {MAX_BODY_BYTES}")
    typed = is_json(request.headers.get("content-type"))
    if not typed and not allow_empty:
        raise _not_json(request)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ReceiverError(413, f"body is over the limit of {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        if allow_empty:
            return "", None
        raise ReceiverError(400, "the body is empty (expected a JSON object)")
    if not typed:  # an empty body needs no type; any other must say it is JSON
        raise _not_json(request)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReceiverError(400, f"the body is not UTF-8 text (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
        if text.count("[") + text.count("{") > MAX_DEPTH and _too_deep(value):
            raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
        if _SURROGATE_ESCAPE.search(text):
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        if _NUL_ESCAPE in text:
            value = strip_nul(value)
    except json.JSONDecodeError as exc:
        raise ReceiverError(400, f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except UnicodeEncodeError:
        raise ReceiverError(
            400, "invalid JSON: a \\u escape is half a surrogate pair, not a character"
        ) from None
    except ValueError as exc:
        raise ReceiverError(400, f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ReceiverError(400, "invalid JSON: nested too deeply") from None
    return text, value


def strip_nul(value: Any) -> Any:
    """`value` with every NUL character removed from its keys and strings, at any depth.

    Two keys that differ only by NULs become one, the later winning (as for a repeated key).
    """
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [strip_nul(item) for item in value]
    if isinstance(value, dict):
        return {key.replace("\x00", ""): strip_nul(item) for key, item in value.items()}
    return value


def _not_json(request: Request) -> ReceiverError:
    got = request.headers.get("content-type") or "none"
    return ReceiverError(415, f"Content-Type must be application/json (or a +json type), got {got[:100]!r}")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _too_deep(value: Any) -> bool:
    """Whether arrays and objects nest more than MAX_DEPTH levels (walked without recursion)."""
    stack = [(value, 1)] if isinstance(value, dict | list) else []
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _finite_float(number: str) -> float:
    """A JSON number as a float; one past a double's range (1e400) would become Infinity."""
    value = float(number)
    if math.isinf(value):
        raise ValueError(f"the number {number[:32]} is out of range")
    return value
