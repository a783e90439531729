"""The execution report of `command` stages: CPU, peak RSS and artifacts, as text for people.

`flows.render` puts these in the node table (`cpu`, `peak_rss` cells), the summary artifact
(a section listing each stage with its artifacts) and the result `pipeline run` and
`pipeline show` print. A failed stage's facts come from its error's details (an invalid
artifact's record, say). Nothing here imports Prefect.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "artifact_facts",
    "artifacts_of",
    "cpu_text",
    "exit_code_of",
    "measured",
    "resources",
    "result_lines",
    "rss_text",
]

_SHOWN_CHARS = 160


def _sources(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a command node's facts are: its output, else the details of its errors."""
    found = [node.get("output"), *((e or {}).get("details") for e in node.get("errors") or [])]
    return [source for source in found if isinstance(source, dict)]


def resources(node: dict[str, Any] | None) -> tuple[float | None, int | None]:
    """(CPU seconds, peak RSS bytes) of a command node's process tree; None where not measured.

    A program too short to sample has CPU seconds (the kernel counts them) but no peak RSS.
    """
    for source in _sources(node or {}):
        cpu, rss = source.get("cpu_seconds"), source.get("peak_rss_bytes")
        if cpu is not None or rss is not None:
            return (
                float(cpu) if isinstance(cpu, int | float) and not isinstance(cpu, bool) else None,
                rss if isinstance(rss, int) and not isinstance(rss, bool) else None,
            )
    return None, None


def cpu_text(seconds: float | None) -> str:
    """`0.05 s`, as the node's summary line says it; empty when not measured."""
    return f"{seconds:.2f} s" if seconds is not None else ""


def rss_text(size: int | None) -> str:
    """`11 MiB`, as the node's summary line says it; empty when not measured."""
    return f"{size / 2**20:.0f} MiB" if size is not None else ""


def artifacts_of(node: dict[str, Any]) -> list[dict[str, Any]]:
    for source in _sources(node):
        if isinstance(source.get("artifacts"), list):
            return [a for a in source["artifacts"] if isinstance(a, dict)]
    return []


def artifact_facts(artifact: dict[str, Any], code: str = "") -> str:
    """`valid, 214 bytes, sha256 edb0149c11dc…` (or what was wrong); `code` quotes the hash."""
    if artifact.get("exists") is False:  # `valid` None: an optional file, absent
        state = "missing" if artifact.get("valid") is not None else "absent (optional)"
    else:
        state = "valid" if artifact.get("valid") else "INVALID"
    facts = [state]
    if isinstance(artifact.get("bytes"), int):
        facts.append(f"{artifact['bytes']} bytes")
    if artifact.get("sha256"):
        facts.append(f"sha256 {code}{str(artifact['sha256'])[:12]}…{code}")
    return ", ".join(facts)


def exit_code_of(node: dict[str, Any]) -> Any:
    for source in _sources(node):
        if "exit_code" in source:
            return source["exit_code"]
    return None


def measured(node: dict[str, Any]) -> str:
    cpu, rss = resources(node)
    parts = ([f"cpu {cpu_text(cpu)}"] if cpu is not None else []) + (
        [f"peak RSS {rss_text(rss)}"] if rss is not None else []
    )
    return ", ".join(parts)


def _clip(text: str) -> str:
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 1] + "…"


def result_lines(output: dict[str, Any]) -> list[str]:
    """A command node's lines in the result `pipeline run` and `pipeline show` print: what ran,
    how it ended, what it used and left, and the last line it wrote (the whole is in `--json`)."""
    lines = [
        f"  Command: {_clip(' '.join(str(a) for a in output.get('argv') or []))}",
        f"  Exit code: {output.get('exit_code')}",
    ]
    used = measured({"output": output})
    if used:
        lines.append(f"  Resources: {used}")
    lines += [f"  Artifact: {a.get('path')} ({artifact_facts(a)})" for a in artifacts_of({"output": output})]
    if "parsed" in output:
        parsed = json.dumps(output["parsed"], default=str, ensure_ascii=False)
        lines.append(f"  Parsed: {_clip(parsed)}")
    for stream in ("stdout", "stderr") if "parsed" not in output else ("stderr",):
        written = [line for line in str(output.get(stream) or "").splitlines() if line.strip()]
        if written:
            lines.append(f"  {stream.capitalize()} (last line): {_clip(written[-1])}")
    return lines
