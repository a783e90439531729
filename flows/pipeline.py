"""The one Prefect flow: read a definition, run each node as a task, return the Run result.

Prefect owns retries, timeouts, run history and the UI; the flow only decides which
node runs when (see `flows.runbook`) and passes outputs along.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, cast

from flows.settings import apply_prefect_defaults

apply_prefect_defaults()

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import acreate_markdown_artifact, acreate_table_artifact  # noqa: E402
from prefect.states import Completed, Failed, State  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402
from prefect.utilities.annotations import quote  # noqa: E402

from flows.settings import share_api_tls_contexts  # noqa: E402

share_api_tls_contexts()  # every task run opens API clients: each would parse the CA bundle

from flows.approval import Approvals  # noqa: E402
from flows.definition import Pipeline, load_definition  # noqa: E402
from flows.engine_logs import one_line_node_errors  # noqa: E402
from flows.hooks import HOOKS  # noqa: E402
from flows.limits import check_value_depth  # noqa: E402
from flows.node_task import NodeCall, failure, node_task, show_result  # noqa: E402
from flows.parameters import parameters_for  # noqa: E402
from flows.progress import emit  # noqa: E402
from flows.render import artifact_markdown, artifact_rows, state_message  # noqa: E402
from flows.request import DEFAULT_ENVIRONMENT, DEFAULT_SOURCE, FLOW_NAME, RunRequest  # noqa: E402
from flows.rollback import roll_back, rollback_note  # noqa: E402
from flows.runbook import RunBook, WhenFailed  # noqa: E402
from flows.stage import outputs_markdown  # noqa: E402
from nodes.base import NodeContext, Secrets  # noqa: E402
from nodes.errors import DefinitionError, OpsflowError  # noqa: E402
from nodes.runtime import node_result  # noqa: E402

__all__ = ["FLOW_NAME", "run_pipeline"]
MAX_CONCURRENT_NODES = 16
# result artifacts (a node's output on its task run page) sent at once, and the longest the run waits for them
SHOWING_AT_ONCE = 4
SHOW_TIMEOUT_SECONDS = 10.0


def _flow_run_name() -> str:
    from prefect.runtime import flow_run

    from flows.history import definition_label

    params = flow_run.parameters
    trace = params.get("trace_id") or str(flow_run.id or uuid.uuid4())
    return f"{definition_label(params.get('definition'))}-{trace.replace('-', '')[:8]}"


def _read_secret(name: str) -> str:
    from prefect.blocks.system import Secret

    # called in the node's own thread (no run context, no loop): load dispatches to the sync path
    return str(cast(Secret, Secret.load(name)).get())


@flow(  # type: ignore[call-overload]  # prefect's overloads do not cover task_runner=ThreadPoolTaskRunner with **HOOKS
    name=FLOW_NAME,
    flow_run_name=_flow_run_name,
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_CONCURRENT_NODES),
    # each node's result is persisted by its task (flows.node_task); the Run result is rebuilt from them
    persist_result=False,
    log_prints=False,
    validate_parameters=True,
    **HOOKS,
)
async def run_pipeline(
    definition: str | dict[str, Any],
    payload: dict[str, Any] | None = None,
    source: str = DEFAULT_SOURCE,
    environment: str = DEFAULT_ENVIRONMENT,
    trace_id: str | None = None,
    only: list[str] | None = None,
    skip: list[str] | None = None,
    incident_id: str | None = None,
    continue_on_error: bool = False,
    http: dict[str, Any] | None = None,
    alert_format: str | None = None,
    from_run: str | None = None,
    from_node: str | None = None,
) -> State[dict[str, Any]]:
    """Run an opsflow pipeline definition: each node is a task, the Run result is the flow's result.

    The parameters are those of `flows.request.RunRequest`.

    Args:
        definition: The pipeline to run: a name from definitions/, a file path,
            `block:NAME` (a definition block), or the whole definition as JSON.
        payload: What the run is about, as sent: an alert webhook body (e.g. Alertmanager's),
            or any JSON object the definition's templates read as `payload`.
        source: Where the run came from (cli, api, receiver, schedule, ...): a tag of the
            run, and `run.source` in templates.
        environment: The environment the run is for (`run.environment` in templates).
        trace_id: An id to follow the run by across systems; the flow run id when empty.
        only: Run only these node ids; every other node is skipped.
        skip: Skip these node ids; the nodes after them still run and see their output as null.
        incident_id: Run about this incident of the incident store (e.g. a re-analysis);
            an ingest node in the definition replaces it with its own.
        continue_on_error: Run the other nodes after a required node failed; the run
            ends `partial` instead of failed.
        http: The raw webhook request (headers and body) the receiver keeps for a signed
            alert format; empty for other runs.
        alert_format: The payload's alert format as the receiver detected it (alertmanager,
            grafana, ...); an ingest node set to `auto` uses it instead of detecting it again.
        from_run: A past run (id, unique id prefix or name) whose outputs stand in for the
            nodes not after `from_node`; given with `from_node`.
        from_node: Start at this node: it and the nodes after it run, the other nodes that
            completed in `from_run` are not run again.
    """
    from prefect.runtime import flow_run

    started = time.perf_counter()
    one_line_node_errors()
    pipeline = load_definition(definition)
    _check_ids(pipeline, only, skip)
    check_value_depth(payload, "payload")  # an API caller's payload gets the CLI's limit too
    params = parameters_for(pipeline, payload)  # every wrong or missing value named, before any node
    run_id = str(flow_run.id) if flow_run.id else None
    request = RunRequest(
        definition=definition,
        payload=payload or {},
        source=source,
        environment=environment,
        trace_id=trace_id,
        only=only,
        skip=skip,
        incident_id=incident_id,
        continue_on_error=continue_on_error,
        http=http,
        alert_format=alert_format,
        from_run=from_run,
        from_node=from_node,
    )
    info = request.run_info(pipeline, run_id=run_id, ui_url=flow_run.ui_url)
    if from_run or from_node:
        from flows.resume import check_resume

        check_resume(pipeline, from_run, from_node)
    if run_id:
        from flows.history import tag_flow_run

        await tag_flow_run(run_id, pipeline.name, source)
    emit({"state": "started", "run_id": run_id, "trace_id": info.trace_id, "definition": pipeline.name})
    ctx = NodeContext(
        run=info,
        payload=request.payload,
        params=params,
        http=http,
        alert_format=alert_format,
        secrets=Secrets(),
        secret_lookup=_read_secret,
    )
    if incident_id is not None:
        ctx.incident = _stored_incident(incident_id)
    book = RunBook(pipeline, only=only, skip=skip, continue_on_error=continue_on_error)
    if from_run and from_node:
        from flows.resume import reuse_past_run

        reused = await reuse_past_run(
            pipeline, book, ctx, from_run, from_node, on_done=lambda n: emit(book.event(n))
        )
        incident_id = reused or incident_id
    futures: dict[str, Any] = {}
    incident_id = await _drive(pipeline, book, ctx, futures) or incident_id
    await roll_back(pipeline, book, ctx, futures)

    result = {
        "trace_id": info.trace_id,
        "run_id": run_id,
        "definition": pipeline.name,
        "definition_version": pipeline.definition_version,
        "definition_source": pipeline.source,
        "status": book.status,
        "incident_id": incident_id,
        "executed_nodes": book.executed(),
        "skipped_nodes": book.skipped_ids(),
        "node_results": {
            node_id: book.results[node_id] for node_id in pipeline.nodes if node_id in book.results
        },
        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
        "error": book.error,
    }
    result = ctx.secrets.redact(result)
    await _attach_artifacts(pipeline, result)
    if book.status == "failed":  # the original error first; what the rollback did after it
        return Failed(message=state_message(result) + rollback_note(pipeline, book), data=result)
    return Completed(message=state_message(result), data=result)


def _stored_incident(incident_id: str) -> dict[str, Any]:
    from nodes.incidents.store import get_incident

    incident = get_incident(int(incident_id)) if str(incident_id).isdigit() else None
    if incident is None:
        raise OpsflowError(f"incident {incident_id!r} is not in the incident store")
    return incident


def _check_ids(pipeline: Pipeline, only: list[str] | None, skip: list[str] | None) -> None:
    unknown = [i for i in [*(only or []), *(skip or [])] if i not in pipeline.nodes]
    if unknown:
        raise DefinitionError(
            f"unknown node id(s) in only/skip: {', '.join(unknown)} (nodes: {', '.join(pipeline.nodes)})"
        )


async def _drive(pipeline: Pipeline, book: RunBook, ctx: NodeContext, futures: dict[str, Any]) -> str | None:
    """Submit nodes as their predecessors finish; collect results until nothing runs.

    An approval node waits for its answer in an asyncio task of its own, so the nodes
    of other branches go on meanwhile; a run that ends early stops its waiting approvals.
    `futures` gets each node's task future (a rollback's compensations wait on them).
    """
    submitted: dict[str, float] = {}  # for a node's total time over its attempts and retry waits
    waiting: dict[asyncio.Future, str] = {}
    approvals = Approvals()
    asking: list[asyncio.Future] = []
    shown: list[asyncio.Future] = []  # result artifacts on their way, off the nodes' critical path
    showing = asyncio.Semaphore(SHOWING_AT_ONCE)
    incident_id = None
    try:
        while True:
            for node_id in _settle_ready(pipeline, book, ctx):
                node = pipeline.nodes[node_id]
                options = pipeline.options(node)
                call = NodeCall(node_id, node.type, node.config, ctx, pipeline.dynamic[node_id], options)
                # the dependency is for the UI's graph; a failed optional upstream must not block
                upstream = [
                    futures[p]
                    for p in pipeline.predecessors[node_id]
                    if book.state[p] == "done" and p in futures
                ]
                if node.type == "approval":  # Prefect pauses flow runs, not tasks
                    asked = asyncio.ensure_future(approvals.decide(call, upstream))
                    asking.append(asked)
                    waiting[asked] = node_id
                else:
                    the_task = node_task(
                        node.type,
                        node_id,
                        options["retries"],
                        options["retry_delay_seconds"],
                        options["timeout_seconds"],
                    )
                    future = the_task.submit(quote(call), wait_for=upstream)
                    futures[node_id] = future
                    waiting[asyncio.wrap_future(future.wrapped_future)] = node_id
                submitted[node_id] = time.perf_counter()
                book.start(node_id)
            if not waiting:
                await _all_shown(shown)
                return incident_id
            done, _ = await asyncio.wait(list(waiting), return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                node_id = waiting.pop(finished)
                node = pipeline.nodes[node_id]
                total_ms = round((time.perf_counter() - submitted[node_id]) * 1000, 2)
                if node.type == "approval" and finished.exception() is not None:
                    # the pause itself failed (the API refused it): the node fails, the run decides
                    message = ctx.secrets.redact(f"node {node_id!r}: {finished.exception()}")
                    error = {"message": message, "retryable": False}
                    failed = node_result(node_id, node.type, errors=[error])
                    book.fail(node_id, {**failed, "total_ms": total_ms}, message)
                    ctx.nodes[node_id] = None
                    emit(book.event(node_id))
                    continue
                if node.type == "approval":
                    futures[node_id] = finished.result()
                futures[node_id].wait()  # already done: records the final state on the future
                state = futures[node_id].state
                if state.is_completed():
                    result = {**futures[node_id].result(), "total_ms": total_ms}
                    book.finish(node_id, result)
                    shown.append(asyncio.ensure_future(_show(showing, futures[node_id], result)))
                    ctx.nodes[node_id] = result["output"]
                    if node.type == "ingest" and isinstance(result["output"].get("incident"), dict):
                        ctx.incident = result["output"]["incident"]
                        incident_id = result["output"].get("incident_id") or ctx.incident.get("id")
                else:
                    failed, message = failure(node_id, node.type, state, ctx)
                    book.fail(node_id, {**failed, "total_ms": total_ms}, message)
                    ctx.nodes[node_id] = None
                emit(book.event(node_id))
    finally:
        for question in asking:  # an approval still waiting when the run was cancelled
            question.cancel()


async def _show(showing: asyncio.Semaphore, future: Any, result: dict[str, Any]) -> None:
    async with showing:
        await show_result(future, result)


async def _all_shown(shown: list[asyncio.Future]) -> None:
    """Wait (a bounded time) for the result artifacts: the UI's view of a result matters less than the run."""
    if not shown:
        return
    done, late = await asyncio.wait(shown, timeout=SHOW_TIMEOUT_SECONDS)
    for artifact in late:
        artifact.cancel()
    failed = [f.exception() for f in done if not f.cancelled() and f.exception() is not None]
    if failed or late:
        get_run_logger().warning(
            "%d of %d node result(s) not shown in the UI (%s); `pipeline show` reads them from storage",
            len(failed) + len(late),
            len(shown),
            failed[0] if failed else f"the API took over {SHOW_TIMEOUT_SECONDS:g} s",
        )


def _settle_ready(pipeline: Pipeline, book: RunBook, ctx: NodeContext) -> list[str]:
    """Skip or fail the ready nodes that must not run (until none is left); return those to start."""
    while True:
        settled = False
        to_start = []
        for node_id in book.ready():
            node = pipeline.nodes[node_id]
            try:
                reason = book.skip_reason(node_id, ctx.data())
            except WhenFailed as exc:
                message = ctx.secrets.redact(str(exc))
                error = {"message": message, "retryable": False}
                book.fail(node_id, node_result(node_id, node.type, errors=[error]), message)
                ctx.nodes[node_id] = None
                emit(book.event(node_id))
                settled = True
                continue
            if reason:
                book.skipped(node_id, node_result(node_id, node.type, skipped=True, skip_reason=reason))
                ctx.nodes[node_id] = None  # a join after it sees this input as null
                emit(book.event(node_id))
                settled = True
                continue
            to_start.append(node_id)
        if not settled:
            return to_start


async def _attach_artifacts(pipeline: Pipeline, result: dict[str, Any]) -> None:
    """The node table and a summary on the flow run, so the UI shows what happened."""
    key = f"opsflow-{pipeline.name}".lower().replace("_", "-")
    try:
        await acreate_table_artifact(
            table=artifact_rows(pipeline, result), key=key, description=f"{pipeline.name}: nodes of this run"
        )
        await acreate_markdown_artifact(  # with the node outputs `pipeline run-stage --from-run` reads
            markdown=artifact_markdown(pipeline, result) + outputs_markdown(result),
            key=f"{key}-summary",
            description="Run summary",
        )
    except Exception as exc:  # the run's outcome matters more than its report
        get_run_logger().warning("could not attach the result artifacts: %s", exc)
