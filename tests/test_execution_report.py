"""The execution report of `command` stages: CPU seconds and peak RSS in the node table, and each
stage with its artifacts in the summary, read back through the Prefect API and `pipeline show`.

A real flow run on the session's server: `build` holds 64 MiB and burns 0.3 s of CPU, then
leaves a schema-checked artifact; `count` is no command (its cells stay empty); `lint` leaves an
artifact its schema refuses, and fails (it is not required, so the run is partial).
"""

from __future__ import annotations

import hashlib
import json
import textwrap
import uuid
from pathlib import Path

import pytest

from flows.command_report import cpu_text, resources, rss_text
from flows.render import duration_text

pytestmark = pytest.mark.timeout(180)

MiB = 2**20
BUILD = """
import json, os, time
held = b"x" * (64 * 2**20)  # written, so it is resident
deadline = time.monotonic() + 30
while time.process_time() < 0.3 and time.monotonic() < deadline:
    pass
os.makedirs("dist", exist_ok=True)
with open("dist/out.json", "w") as f:
    json.dump({"modules": ["api", "web"]}, f)
print(json.dumps({"modules": 2, "held": len(held)}))
"""
LINT = """
import json, os
os.makedirs("lint", exist_ok=True)
with open("lint/report.json", "w") as f:
    json.dump({"problems": 1}, f)
"""
COLUMNS = ["node", "type", "status", "summary", "duration", "attempts", "cpu", "peak_rss"]
COLUMNS += ["tokens", "skip_reason", "error"]


def write_pipeline(root: Path) -> Path:
    (root / "build.py").write_text(textwrap.dedent(BUILD))
    (root / "lint.py").write_text(textwrap.dedent(LINT))
    schema = {"type": "object", "required": ["modules"], "properties": {"modules": {"type": "array"}}}
    nodes = [
        {
            "id": "build",
            "type": "command",
            "config": {
                "command": ["python3", "build.py"],
                "artifacts": [{"path": "dist/out.json", "schema": schema}],
                "output": "json",
            },
            "next": "count",
        },
        {
            "id": "count",
            "type": "transform",
            "config": {"source_node": "build", "extract": "parsed"},
            "next": "lint",
        },
        {
            "id": "lint",
            "type": "command",
            "required": False,
            "config": {
                "command": ["python3", "lint.py"],
                "artifacts": [{"path": "lint/report.json", "schema": {"type": "object", "required": ["ok"]}}],
            },
        },
    ]
    path = root / "report.json"
    path.write_text(json.dumps({"name": f"report-{uuid.uuid4().hex[:6]}", "version": "1.0", "nodes": nodes}))
    return path


def artifacts_of(run_id: str) -> tuple[list[dict], str]:
    """The flow run's node table rows and summary markdown, as the Prefect API returns them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(run_id)]))
        )
    table = next(a for a in found if a.type == "table")
    markdown = next(a for a in found if a.type == "markdown" and (a.key or "").endswith("-summary"))
    return (json.loads(table.data) if isinstance(table.data, str) else table.data), markdown.data


def test_command_stages_report_cpu_peak_rss_and_artifacts(run, cli_run, tmp_path):
    path = write_pipeline(tmp_path)
    state, result = run(str(path))
    assert result["status"] == "partial", result["error"]
    build = result["node_results"]["build"]
    out = build["output"]
    assert out["cpu_seconds"] >= 0.3 and out["peak_rss_bytes"] >= 64 * MiB, out
    data = (tmp_path / "dist" / "out.json").read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    lint_data = (tmp_path / "lint" / "report.json").read_bytes()

    rows, markdown = artifacts_of(result["run_id"])
    table = {row["node"]: row for row in rows}
    assert list(table["build"]) == COLUMNS
    assert table["build"]["cpu"] == cpu_text(out["cpu_seconds"]) == f"{out['cpu_seconds']:.2f} s"
    assert table["build"]["peak_rss"] == rss_text(out["peak_rss_bytes"])
    assert int(table["build"]["peak_rss"].removesuffix(" MiB")) >= 64
    assert table["count"]["cpu"] == table["count"]["peak_rss"] == ""  # not a command: empty cells
    assert table["lint"]["status"] == "failed" and "artifact lint/report.json" in table["lint"]["error"]
    assert "None" not in json.dumps(rows)

    stages = markdown.split("## Command stages\n\n")[1].split("\n\n")[0].splitlines()
    assert stages[0] == (
        f"- `build`: completed, exit code 0 in {duration_text(build['duration_ms'])}; "
        f"cpu {cpu_text(out['cpu_seconds'])}, peak RSS {rss_text(out['peak_rss_bytes'])}"
    )
    assert stages[1] == f"  - artifact `dist/out.json`: valid, {len(data)} bytes, sha256 `{sha[:12]}…`"
    # the failed stage, with the artifact its schema refused (the record the node failed with)
    assert stages[2].startswith("- `lint`: failed")
    lint_sha = hashlib.sha256(lint_data).hexdigest()
    assert (
        stages[3]
        == f"  - artifact `lint/report.json`: INVALID, {len(lint_data)} bytes, sha256 `{lint_sha[:12]}…`"
    )
    assert len(stages) == 4  # `count` is no command stage

    # `pipeline show`: the stage's lines, and the table with its two columns
    code, shown, err = cli_run("show", result["run_id"])
    assert code == 0, err
    assert (
        "--- command (build) ---\n  Command: python3 build.py\n  Exit code: 0\n"
        f"  Resources: cpu {cpu_text(out['cpu_seconds'])}, peak RSS {rss_text(out['peak_rss_bytes'])}\n"
        f"  Artifact: dist/out.json (valid, {len(data)} bytes, sha256 {sha[:12]}…)\n"
        '  Parsed: {"modules": 2, "held": 67108864}\n'
    ) in shown
    header, *lines = shown.split("Result artifact (")[1].split("\n\n")[0].splitlines()[1:]
    assert header.split() == COLUMNS
    build_line = next(line for line in lines if line.split()[0] == "build")
    for column in ("cpu", "peak_rss"):  # each value under its column's name
        at = header.index(f"  {column}") + 2
        assert build_line[at:].startswith(table["build"][column]), (column, header, build_line)
    code, as_json, err = cli_run("show", result["run_id"], "--json")
    assert code == 0, err
    assert json.loads(as_json)["node_results"]["build"]["output"]["peak_rss_bytes"] == out["peak_rss_bytes"]
    # and `pipeline run` prints the stage the same way
    code, printed, err = cli_run("run", "--config", str(path))
    assert code == 0, err
    block = printed.split("--- command (build) ---\n")[1].split("\n\n")[0]
    assert block.startswith("  Command: python3 build.py\n  Exit code: 0\n  Resources: cpu ")
    assert "\n  Artifact: dist/out.json (valid, " in block and "cwd:" not in block


def test_a_failed_stage_shows_the_numbers_its_error_carries():
    failed = {"output": {}, "errors": [{"message": "exit code 3", "details": {"cpu_seconds": 0.5}}]}
    assert resources(failed) == (0.5, None)
    failed["errors"][0]["details"] = {"exit_code": 3, "cpu_seconds": 1, "peak_rss_bytes": 3 * MiB}
    assert resources(failed) == (1.0, 3 * MiB)
    assert (cpu_text(1.0), rss_text(3 * MiB)) == ("1.00 s", "3 MiB")
    assert resources({"output": {"exit_code": 0}, "errors": []}) == (None, None)
    assert (cpu_text(None), rss_text(None)) == ("", "")
