"""The definition JSON Schema (definitions/schema.json) as the schema of a Prefect block field.

A block schema resolves `$ref`s against its own top-level `definitions` (Prefect's
`Block.model_json_schema` moves `$defs` there and drops every `additionalProperties`),
so the definition schema's `$defs` are merged into them, its refs rebased, and the rest
becomes the field's schema, after Prefect's rewriting: unknown keys stay refused.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from typing import Any

__all__ = ["with_definition_schema"]


def with_definition_schema(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """`schema` (a block schema) with the definition JSON Schema as property `field`'s schema.

    The field keeps its own title, description and position (the form's label and order).
    """
    structure = _definition_structure()
    definitions = schema.setdefault("definitions", {})
    clash = set(definitions) & set(structure["definitions"])
    if clash:  # a nested model of the same name: never silently replaced
        raise TypeError(f"block schema definitions clash with the definition schema: {sorted(clash)}")
    definitions.update(copy.deepcopy(structure["definitions"]))
    schema["properties"][field].update(copy.deepcopy(structure["field"]))
    return schema


@lru_cache(maxsize=1)
def _definition_structure() -> dict[str, Any]:
    from flows.json_schema import definition_schema

    schema = _rebase(definition_schema())
    definitions = schema.pop("$defs", {})
    for key in ("$schema", "title", "description"):
        schema.pop(key, None)
    return {"definitions": definitions, "field": schema}


def _rebase(value: Any) -> Any:
    """Point `#/$defs/X` at `#/definitions/X`, where a block schema keeps them."""
    if isinstance(value, dict):
        return {
            key: item.replace("#/$defs/", "#/definitions/", 1)
            if key == "$ref" and isinstance(item, str)
            else _rebase(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rebase(item) for item in value]
    return value
