"""`pipeline run-stage`: one node of a definition, run here for debugging, without a flow run.

Its upstream outputs come from a past run (`--from-run`): the node results its tasks
persisted (`flows.results`), else the JSON block of node outputs that ends every flow
run's summary artifact (both redacted, so secrets read `***`).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any, cast

from flows.definition import Pipeline
from flows.parameters import parameters_for
from nodes.errors import UsageError

__all__ = ["OUTPUTS_HEADING", "outputs_markdown", "past_run", "run_stage"]

OUTPUTS_HEADING = "## Node outputs (redacted)"
# an artifact over this is stored without the outputs (they would not help anyone read it)
MAX_OUTPUTS_CHARS = 256 * 1024
_FENCE = re.compile(r"```json\n(.*)\n```", re.DOTALL)


def outputs_markdown(result: dict[str, Any]) -> str:
    """The run's node outputs (already redacted): a section of the summary artifact."""
    outputs = {
        node_id: node.get("output")
        for node_id, node in result["node_results"].items()
        if not node.get("skipped") and not node.get("errors")
    }
    text = json.dumps(outputs, indent=1, default=str, ensure_ascii=False)
    if len(text) > MAX_OUTPUTS_CHARS:
        text = json.dumps({"truncated": f"outputs over {MAX_OUTPUTS_CHARS} characters are not kept"})
    return f"\n\n{OUTPUTS_HEADING}\n\nFor `pipeline run-stage --from-run`.\n\n```json\n{text}\n```"


async def past_run(ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload, node outputs) of a past run named by id, unique id prefix or name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.client.schemas.sorting import ArtifactSort

    from flows.history import resolve_run
    from flows.past_runs import task_runs_of
    from flows.results import stored_results

    async with get_client() as client:
        flow_run = await resolve_run(client, ref)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])),
            sort=ArtifactSort.CREATED_DESC,
        )
        stored = await stored_results(await task_runs_of(client, flow_run.id))
    payload = (flow_run.parameters or {}).get("payload") or {}
    found = next((a for a in artifacts if a.type == "markdown" and (a.key or "").endswith("-summary")), None)
    data = found.data if found is not None and isinstance(found.data, str) else ""
    match = _FENCE.search(data.split(OUTPUTS_HEADING, 1)[1]) if OUTPUTS_HEADING in data else None
    if match is None and not stored:
        raise UsageError(f"Flow run {ref} kept no node outputs (it ran before outputs were recorded)")
    outputs = json.loads(match.group(1)) if match is not None else {}
    outputs.update({node_id: result["output"] for node_id, result in stored.items()})
    return (payload if isinstance(payload, dict) else {}), outputs


def run_stage(
    pipeline: Pipeline, node_id: str, payload: dict[str, Any], outputs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run one node with `payload` and its upstream `outputs`; return its node result.

    A failing node raises its `NodeError`, as in a flow run (no retries here).
    """
    from nodes.base import NodeContext, RunInfo, Secrets
    from nodes.runtime import execute_node

    if node_id not in pipeline.nodes:
        raise UsageError(f"Unknown node id: {node_id} (nodes: {', '.join(pipeline.nodes)})")
    node = pipeline.nodes[node_id]
    if node.type == "approval":
        raise UsageError(f"node {node_id!r} is an approval: it pauses a flow run, run the pipeline instead")
    info = RunInfo(
        trace_id=uuid.uuid4().hex,
        definition=pipeline.name,
        definition_version=pipeline.definition_version,
        source="run-stage",
        configured=pipeline.configured(),
        definition_dir=pipeline.directory,
    )
    params = parameters_for(pipeline, payload)  # as the flow does: every wrong value named
    ctx = NodeContext(run=info, payload=payload, params=params, secrets=Secrets(), secret_lookup=_read_secret)
    upstream = pipeline.ancestors(node_id)
    for name, output in (outputs or {}).items():
        if name in upstream:
            ctx.nodes[name] = output
            if pipeline.nodes[name].type == "ingest" and isinstance(output, dict):
                ctx.incident = output.get("incident") if isinstance(output.get("incident"), dict) else None
    result = execute_node(node_id, node.type, node.config, ctx, dynamic=pipeline.dynamic[node_id])
    result["attempts"] = 1
    return ctx.secrets.redact(result)


def _read_secret(name: str) -> str:
    from flows.prefect_api import with_api

    def load() -> str:
        from prefect.blocks.system import Secret

        # a sync caller with no run context: load dispatches to the sync path
        return str(cast(Secret, Secret.load(name)).get())

    return with_api(load)
