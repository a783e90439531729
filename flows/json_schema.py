"""The JSON Schema of definition files, generated from the pydantic models.

Each node type's own `Config` schema is attached through `if type == X then config`,
so editors validate and complete node configs too. `definitions/schema.json` is this
output, checked in; a test fails when it is stale.
"""

from __future__ import annotations

import json
from typing import Any

from flows.definition import PROJECT_DEFINITIONS, Definition
from nodes import NODE_TYPES, get_node_type

SCHEMA_PATH = PROJECT_DEFINITIONS / "schema.json"


def definition_schema() -> dict[str, Any]:
    schema = Definition.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    node = schema["$defs"]["Node"]
    node["properties"]["type"]["enum"] = sorted(NODE_TYPES)
    rules = []
    for name in sorted(NODE_TYPES):
        config_schema = get_node_type(name).Config.model_json_schema(by_alias=True, mode="validation")
        defs = config_schema.pop("$defs", {})
        for key, value in defs.items():
            schema["$defs"].setdefault(f"{name}.{key}", value)
        config_schema = _rebase_refs(config_schema, name)
        schema["$defs"][f"{name}.Config"] = config_schema
        rules.append(
            {
                "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                "then": {"properties": {"config": {"$ref": f"#/$defs/{name}.Config"}}},
            }
        )
    for key in list(schema["$defs"]):
        if "." in key:
            schema["$defs"][key] = _rebase_refs(schema["$defs"][key], key.split(".", 1)[0])
    node["allOf"] = rules
    _describe_drivers(schema["$defs"])
    # a name the pattern refuses is an error, not an unchecked extra key
    schema["properties"]["parameters"]["additionalProperties"] = False
    for policy in ("on_start", "on_success", "on_failure"):  # each is a notify config
        schema["properties"][policy]["items"] = {"$ref": "#/$defs/notify.Config"}
    return schema


def _describe_drivers(defs: dict[str, Any]) -> None:
    """Give `notify` configs (and each of `channels`) their driver's settings, keyed on `driver`.

    The pydantic model takes driver settings as extra keys, so its own schema would allow
    anything; here each driver's fields apply when `driver` names it (console when absent),
    and any other key is refused (`unevaluatedProperties`).
    """
    from nodes.notify import DRIVERS, get_driver

    rules = []
    for name in sorted(DRIVERS):
        driver_schema = get_driver(name).Config.model_json_schema(by_alias=True, mode="validation")
        for key, value in driver_schema.pop("$defs", {}).items():
            defs.setdefault(f"notify-{name}.{key}", _rebase_refs(value, f"notify-{name}"))
        driver_schema = _rebase_refs(driver_schema, f"notify-{name}")
        settings = {"properties": driver_schema.get("properties", {})}
        if driver_schema.get("required"):
            settings["required"] = driver_schema["required"]
        defs[f"notify-{name}.Settings"] = {"description": driver_schema.get("description", ""), **settings}
        when: dict[str, Any] = {"properties": {"driver": {"const": name}}, "required": ["driver"]}
        if name == "console":
            when = {"anyOf": [when, {"not": {"required": ["driver"]}}]}
        rules.append({"if": when, "then": {"$ref": f"#/$defs/notify-{name}.Settings"}})
    for key in ("notify.Config", "notify.Channel"):
        target = defs[key]
        target.pop("additionalProperties", None)
        target["properties"]["driver"]["enum"] = sorted(DRIVERS)
        target["allOf"] = rules
        target["unevaluatedProperties"] = False


def _rebase_refs(value: Any, prefix: str) -> Any:
    """Point `#/$defs/X` refs of a node type's schema at `#/$defs/<type>.X`."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "$ref" and isinstance(item, str) and item.startswith("#/$defs/") and "." not in item:
                out[key] = f"#/$defs/{prefix}.{item.removeprefix('#/$defs/')}"
            else:
                out[key] = _rebase_refs(item, prefix)
        return out
    if isinstance(value, list):
        return [_rebase_refs(item, prefix) for item in value]
    return value


def schema_text() -> str:
    return json.dumps(definition_schema(), indent=2, ensure_ascii=False) + "\n"
