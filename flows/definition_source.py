"""Which source a run of a definition uses: its file, its Prefect block, or inline JSON.

The rules are flows.definition.load_definition's, worked out without loading anything and
without Prefect, so `describe` (which never imports Prefect) and a deployment's description
can tell someone editing a block in the UI whether the next run will use their edit: a
file of the same name wins over the block, unless the run asks for `block:NAME`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from flows.definition import definitions_dir

__all__ = [
    "BLOCK_NAME",
    "BLOCK_PREFIX",
    "BLOCK_TYPE_SLUG",
    "DefinitionSource",
    "definition_source",
    "deployment_description",
]

BLOCK_TYPE_SLUG = "opsflow-pipeline-definition"
# `load_definition("block:NAME")` asks for the block explicitly (names never hold a colon)
BLOCK_PREFIX = "block:"
BLOCK_NAME = re.compile(r"^[a-z0-9-]+$")  # what Prefect accepts as a block document name


@dataclass(frozen=True)
class DefinitionSource:
    """Where a run's definition comes from: `kind` file, block, inline, or missing (the run
    fails "not found"); `where` the file's path or the block's name; `why` the rule."""

    kind: Literal["file", "block", "inline", "missing"]
    where: str
    why: str

    def line(self) -> str:
        """One line for people, e.g. `the file definitions/x.json (...)`."""
        if self.kind == "inline":
            return f"inline JSON ({self.why})"
        if self.kind == "block":
            return f"the Prefect block {BLOCK_TYPE_SLUG}/{self.where} ({self.why})"
        if self.kind == "missing":
            return f"nowhere: {self.where} is not found ({self.why})"
        return f"the file {self.where} ({self.why})"


def definition_source(
    ref: str | Path | dict[str, Any], *, source: Literal["auto", "file", "block"] = "auto"
) -> DefinitionSource:
    """The source `load_definition(ref, source=source)` would read, by the same rules.

    Nothing is read: a block named here may not exist (the run then fails "not found"),
    and whether a Prefect API is configured is read from the environment and profile only.
    """
    if isinstance(ref, dict):
        return DefinitionSource("inline", "inline", "the run's `definition` parameter")
    text = str(ref)
    if isinstance(ref, Path) or text.endswith(".json") or os.sep in text:
        return DefinitionSource("file", text, "a path")
    if text.startswith(BLOCK_PREFIX) or source == "block":
        name = text.removeprefix(BLOCK_PREFIX)
        asked = f"asked for as {text}" if name != text else "asked for with source=block"
        if not BLOCK_NAME.match(name):
            return DefinitionSource("missing", text, "not a block name: lowercase letters, numbers, dashes")
        return DefinitionSource("block", name, asked)
    path = definitions_dir() / f"{text}.json"
    if not text or "\\" in text or text.startswith(".") or text == "schema":
        return DefinitionSource("missing", text, "not a definition name")
    if source == "file":
        return DefinitionSource("file", str(path), "asked for with source=file")
    if path.exists():
        return DefinitionSource(
            "file",
            str(path),
            f"it wins over a Prefect block of the same name; {BLOCK_PREFIX}{text} runs the block",
        )
    from flows.local_server import configured_api_url  # env/profile only; no Prefect import

    if configured_api_url() is None:
        return DefinitionSource(
            "missing", str(path), "no such file, and no Prefect API to look for a block in"
        )
    if not BLOCK_NAME.match(text):
        return DefinitionSource("missing", str(path), "no such file, and not a block name")
    return DefinitionSource("block", text, f"no file {path}; edits in the Prefect UI apply to the next run")


def deployment_description(description: str, ref: str | Path | dict[str, Any]) -> str:
    """A deployment's description (Markdown in the UI) with the source its runs use."""
    where = f"Runs the definition from {definition_source(ref).line()}."
    return f"{description}\n\n{where}" if description else where
