"""A command's declared artifacts: each file exists, is JSON, and is valid against its JSON Schema.

Schemas are a file (relative to the definition's directory) or an inline object; the validator
class is the one the schema's `$schema` names (draft 2020-12 when it names none). A violation
is reported with its JSON path: `$.modules[0].name: 'x' is not of type 'integer'`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = ["MAX_ARTIFACT_BYTES", "check_artifact", "check_schema", "load_schema", "validator_class"]

MAX_ARTIFACT_BYTES = 64 * 1024 * 1024  # an artifact read to check it; a schema file: a fraction
_MAX_SCHEMA_BYTES = 4 * 1024 * 1024
SHOWN_VIOLATIONS = 5
_MESSAGE_CHARS = 200


def validator_class(schema: Any):
    """The jsonschema validator for `schema`'s `$schema`; ValueError for one jsonschema lacks."""
    from jsonschema.validators import Draft202012Validator, validator_for

    if not isinstance(schema, dict | bool):
        raise ValueError(f"a JSON Schema is an object (or true/false), not {type(schema).__name__}")
    if isinstance(schema, bool) or "$schema" not in schema:
        return Draft202012Validator
    declared = schema["$schema"]
    found = validator_for(schema, default=None) if isinstance(declared, str) else None
    if found is None:
        raise ValueError(f"$schema {str(declared)[:100]!r} is not a JSON Schema draft jsonschema knows")
    return found


def check_schema(schema: Any) -> Any:
    """`schema` if it is a valid JSON Schema, else ValueError naming the first problem and where."""
    from jsonschema.exceptions import SchemaError, best_match

    cls = validator_class(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        error = best_match([exc]) or exc
        raise ValueError(f"not a valid JSON Schema: {error.json_path}: {_clip(error.message)}") from None
    except Exception as exc:  # jsonschema choking on an odd value is still this schema's problem
        raise ValueError(f"not a usable JSON Schema: {type(exc).__name__}: {_clip(str(exc))}") from None
    return schema


def load_schema(schema: str | dict[str, Any] | bool, base: Path) -> Any:
    """The schema itself, or read from the file `schema` names (relative to `base`), checked."""
    if not isinstance(schema, str):
        return check_schema(schema)
    path = base / schema
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_SCHEMA_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"schema file not found: {path}") from None
    except (OSError, ValueError) as exc:  # a directory, no permission, a NUL in the name
        raise ValueError(
            f"schema file {path} cannot be read: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    if len(data) > _MAX_SCHEMA_BYTES:
        raise ValueError(f"schema file {path} is over {_MAX_SCHEMA_BYTES} bytes")
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"schema file {path} is not JSON: {_json_problem(exc)}") from None
    try:
        return check_schema(value)
    except ValueError as exc:
        raise ValueError(f"schema file {path}: {exc}") from None


def check_artifact(path: Path, shown: str, schema: Any | None, schema_name: str) -> tuple[dict, str | None]:
    """The artifact's record (path, bytes, sha256, valid) and what is wrong with it, if anything.

    `shown` is the path as declared; `schema` None only asks for the file to exist.
    """
    record: dict[str, Any] = {"path": shown, "exists": False, "bytes": None, "sha256": None, "valid": False}
    try:
        if path.is_dir():
            return record, f"artifact {shown}: is a directory, not a file"
        with path.open("rb") as handle:
            data = handle.read(MAX_ARTIFACT_BYTES + 1)
    except FileNotFoundError:
        return record, f"artifact {shown}: missing (expected at {path})"
    except (OSError, ValueError) as exc:
        return record, f"artifact {shown}: cannot be read: {getattr(exc, 'strerror', None) or exc}"
    record.update(exists=True, bytes=len(data))
    if len(data) > MAX_ARTIFACT_BYTES:
        record["bytes"] = path.stat().st_size
        return record, f"artifact {shown}: over {MAX_ARTIFACT_BYTES} bytes, too large to check"
    record["sha256"] = hashlib.sha256(data).hexdigest()
    if schema is None:
        record["valid"] = True
        return record, None
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return record, f"artifact {shown}: not JSON: {_json_problem(exc)}"
    try:
        violations = _violations(schema, document)
    except Exception as exc:  # an unresolvable $ref, a schema jsonschema cannot apply
        return (
            record,
            f"artifact {shown}: schema {schema_name} cannot be applied: {type(exc).__name__}: {exc}",
        )
    if violations:
        more = len(violations) - SHOWN_VIOLATIONS
        listed = "; ".join(violations[:SHOWN_VIOLATIONS]) + (f" (+{more} more)" if more > 0 else "")
        noun = "violation" if len(violations) == 1 else "violations"
        return (
            record,
            f"artifact {shown}: not valid against {schema_name} ({len(violations)} {noun}): {listed}",
        )
    record["valid"] = True
    return record, None


def _violations(schema: Any, document: Any) -> list[str]:
    """Every violation as `$.path: message`, in document order (the deepest-best for anyOf/oneOf)."""
    from jsonschema.exceptions import best_match

    validator = validator_class(schema)(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: _order(e.absolute_path))
    lines = []
    for error in errors:
        shown = best_match(error.context) if error.context else None
        error = shown if shown is not None and len(shown.absolute_path) > len(error.absolute_path) else error
        lines.append(f"{error.json_path}: {_clip(error.message)}")
    return list(dict.fromkeys(lines))


def _order(path: Any) -> list[tuple[int, Any]]:
    return [(0, part) if isinstance(part, int) else (1, str(part)) for part in path]


def _json_problem(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "not UTF-8"


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MESSAGE_CHARS else text[: _MESSAGE_CHARS - 1] + "…"
