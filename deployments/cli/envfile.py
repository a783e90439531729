"""Settings for one run from a dotenv-style file (`pipeline run --env-file PATH`).

Values are never echoed: every error names the file and the line number, nothing else
of the line, because the line may hold a key or a password.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from flows.limits import MAX_ENV_FILE_BYTES
from nodes.errors import OpsflowError

__all__ = ["load_env_file", "parse_env_file", "parse_env_text"]

_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([^=\s]+)\s*=(.*)$", re.DOTALL)
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _invalid(source: str, line: int, why: str) -> OpsflowError:
    return OpsflowError(f"Invalid line {line} in {source}: {why}")


def _rest_is_comment(rest: str) -> bool:
    rest = rest.strip()
    return not rest or rest.startswith("#")


def _unescape(raw: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), raw, flags=re.DOTALL)


def _quoted(lines: list[str], index: int, value: str, source: str) -> tuple[str, int]:
    """The value of a quoted assignment starting at `lines[index]`, and the next line index.

    A quoted value may span lines (PEM keys); double quotes take backslash escapes,
    single quotes are literal.
    """
    quote = value[0]
    pattern = re.compile(r"'([^']*)'(.*)" if quote == "'" else r'"((?:[^"\\]|\\.)*)"(.*)', re.DOTALL)
    parts, end = [value], index
    while True:
        # re-match only when the newest line may close the quote (no quadratic scans)
        newest = parts[-1][1:] if len(parts) == 1 else parts[-1]
        match = pattern.match("\n".join(parts)) if quote in newest else None
        if match:
            break
        end += 1
        if end >= len(lines):
            raise _invalid(source, index + 1, "unterminated quoted value")
        parts.append(lines[end])
    body, rest = match.groups()
    if not _rest_is_comment(rest):
        raise _invalid(source, end + 1, "unexpected text after the closing quote")
    return (body if quote == "'" else _unescape(body)), end + 1


def parse_env_text(text: str, source: str = "env file") -> dict[str, str]:
    """KEY=VALUE pairs of dotenv text; `source` names the file in error messages.

    Accepted: blank lines, `#` comments (a `#` after whitespace ends an unquoted value),
    `export KEY=...`, spaces around `=`, single quotes (literal) and double quotes
    (escapes \\n \\t \\r \\" \\\\ \\$), quoted values over several lines. No shell
    expansion: `$HOME` stays `$HOME`. A repeated key keeps its last value.
    """
    # only \n and \r\n end a line: str.splitlines would also split on \x85, \u2028, ...
    lines = text.replace("\r\n", "\n").split("\n")
    values: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            index += 1
            continue
        match = _ASSIGNMENT.match(line)
        if not match:
            raise _invalid(source, index + 1, "expected KEY=VALUE")
        name, raw = match.groups()
        if not _NAME.fullmatch(name):
            raise _invalid(source, index + 1, "the name must be letters, digits and _")
        if raw.lstrip()[:1] in ("'", '"'):
            value, index = _quoted(lines, index, raw.lstrip(), source)
        else:
            # a `#` after whitespace starts a comment; `KEY=a#b` keeps its `#`
            value = re.split(r"\s#", raw, maxsplit=1)[0].strip()
            index += 1
        if "\x00" in value:
            raise _invalid(source, index, "the value contains a NUL character")
        values[name] = value
    return values


def parse_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """The KEY=VALUE pairs of a dotenv file, without touching the environment."""
    source = str(path)
    file = Path(path)
    if file.is_dir():
        raise OpsflowError(f"Env file is a directory: {source}")
    if not file.is_file():
        raise OpsflowError(f"Env file not found: {source}")
    try:
        with file.open("rb") as handle:
            data = handle.read(MAX_ENV_FILE_BYTES + 1)  # never a huge file read whole
    except OSError as exc:
        raise OpsflowError(f"Cannot read env file {source}: {exc.strerror}") from exc
    if len(data) > MAX_ENV_FILE_BYTES:
        raise OpsflowError(f"Env file {source} is over {MAX_ENV_FILE_BYTES} bytes (the limit)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _invalid(source, data.count(b"\n", 0, exc.start) + 1, "not UTF-8 text") from None
    return parse_env_text(text, source)


def load_env_file(path: str | os.PathLike[str]) -> list[str]:
    """Put a dotenv file's settings into os.environ for this process; return the names set.

    The file wins over variables already in the environment: it was named explicitly
    for this run, so it must not be silently shadowed by a stale export in the shell.
    The whole file is parsed before anything is set, so a bad line changes nothing.
    """
    values = parse_env_file(path)
    os.environ.update(values)
    return list(values)
