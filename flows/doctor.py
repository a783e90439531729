"""`pipeline doctor`: is this machine ready to run the definitions? Names settings, never values."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from flows.definition import definitions_dir, list_definitions, load_definition
from flows.server import configured_api_url
from nodes import get_node_type
from nodes.errors import DefinitionError


def run_checks() -> Iterator[tuple[bool, str]]:
    """(passed, line) for each check, in the order a person would fix them."""
    version = sys.version_info
    yield version >= (3, 11), f"Python {version.major}.{version.minor}.{version.micro} (3.11+ needed)"
    yield from _prefect_api()
    paths = list_definitions()
    yield bool(paths), f"definitions directory {definitions_dir()} ({len(paths)} definitions)"
    for path in paths:
        try:
            pipeline = load_definition(path)
        except DefinitionError as exc:
            yield False, f"definition {path.stem}: invalid ({'; '.join(exc.problems)})"
            continue
        missing = [n for n in _needed(pipeline) if not n.startswith("secret:") and not os.environ.get(n)]
        if missing:
            yield False, f"definition {pipeline.name}: valid, but not set: {', '.join(missing)}"
        else:
            yield True, f"definition {pipeline.name}: valid, settings present"


def _needed(pipeline) -> list[str]:
    """Settings referenced as ${...}, plus those a node type says it needs (e.g. OPENAI_API_KEY)."""
    names = list(pipeline.settings)
    for node in pipeline.definition.nodes:
        required = getattr(get_node_type(node.type), "required_settings", None)
        if required:
            names.extend(n for n in required(node.config) if n not in names)
    return names


def _prefect_api() -> Iterator[tuple[bool, str]]:
    url = configured_api_url()
    if not url:
        home = os.environ.get("PREFECT_HOME", "~/.prefect")
        yield True, f"Prefect API: local ephemeral server on demand (SQLite in {home})"
        return
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5) as response:
            yield response.status == 200, f"Prefect API at {url}: HTTP {response.status}"
    except OSError as exc:
        yield False, f"Prefect API at {url}: unreachable ({getattr(exc, 'reason', exc)})"
