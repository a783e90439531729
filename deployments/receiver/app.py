"""The alert webhook receiver: every accepted alert becomes a flow run of its definition's deployment.

An alert is answered 202 only once Prefect has created the flow run, so nothing the
receiver accepts can be lost; when Prefect cannot take it the answer is 503 and the
sender retries. Retries are safe: the run is created under an idempotency key taken
from the alerts themselves, so a re-delivered webhook finds the run already made.
With a journal (`journal=`), the 202 comes once the alert is committed to the
journal instead, and its run is created as soon as Prefect can (_receiver_journal).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import uuid
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.receiver.access import TOKEN_ENV, receiver_token
from deployments.receiver.alerts import count_repeat, emit_alert_events, idempotency_key, summarize
from deployments.receiver.definitions import describe, describe_all, require_definition, validate_named
from deployments.receiver.dispatch import dispatch
from deployments.receiver.episodes import Episodes, needs_episodes
from deployments.receiver.http import ReceiverError, read_json
from deployments.receiver.journal import EXPIRED, QUEUED, Journal
from deployments.receiver.models import (
    ALERT,
    DEFINITION,
    Accepted,
    Delivery,
    ExecuteRequest,
    error_responses,
    json_body,
)
from deployments.receiver.prefect import create_run, freeze_heap, prefect_client, reachable
from nodes.errors import OpsflowError
from nodes.ingest import HTTP_KEY
from nodes.scrub import scrub_alert_payload

__all__ = ["DEFAULT_DEFINITION", "create_app", "freeze_heap", "main"]

DEFAULT_DEFINITION = "alert-triage"
PREFECT_TIMEOUT_SECONDS = 10.0
HEALTH_TIMEOUT_SECONDS = 3.0
# flow runs being created at once (more only contend for a SQLite-backed server's lock)
CONCURRENT_RUNS = 4
# parsing a large payload for its idempotency key happens off the event loop
THREAD_PARSE_BYTES = 64 * 1024

log = logging.getLogger("opsflow.receiver")

_BEARER = HTTPBearer(auto_error=False, description=f"Required when ${TOKEN_ENV} is set.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def create_app(
    api_url: str | None = None,
    *,
    timeout: float = PREFECT_TIMEOUT_SECONDS,
    concurrency: int = CONCURRENT_RUNS,
    journal: str | bool = False,
) -> FastAPI:
    """The receiver app; `api_url` overrides the configured Prefect API (tests, a second server).

    `timeout` bounds the Prefect calls of one request (waiting included); past it the
    sender is told 503. `concurrency` is how many flow runs are created at once.
    `journal` (True: the incident store's database; or a database URL) answers alerts
    once journaled and creates their runs in the background.
    Alert events go to the process's configured API whatever `api_url` says (Prefect's
    events worker is process-wide). The token is read now, from $OPSFLOW_RECEIVER_TOKEN or
    $OPSFLOW_RECEIVER_TOKEN_FILE (deployments.receiver.access).
    """
    token = receiver_token()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async with prefect_client(api_url) as client:
            app.state.prefect = client
            app.state.slots = asyncio.Semaphore(concurrency)
            app.state.journal = None
            app.state.episodes = Episodes(None if journal is True or not journal else journal)
            if not journal:
                yield
                return
            app.state.journal = Journal(None if journal is True else journal)
            workers = [
                asyncio.create_task(app.state.journal.run_writer()),
                asyncio.create_task(app.state.journal.run_upkeep()),
                asyncio.create_task(
                    dispatch(app.state.journal, client, slots=app.state.slots, timeout=timeout)
                ),
            ]
            try:
                yield
            finally:
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)

    app = FastAPI(
        title="opsflow alert receiver",
        description="Alert webhooks in, Prefect flow runs out: one run per delivery of an alert group.",
        version="1.0",
        lifespan=lifespan,
    )
    _install_error_handlers(app)

    def authorize(credentials: Credentials) -> None:
        if token is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, token.encode()):
            raise ReceiverError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})

    guarded = [Depends(authorize)]

    @app.post(
        "/pipeline",
        summary="Accept an alert webhook: start a flow run of the definition's deployment",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(400, 401, 404, 413, 415, 502, 503),
        openapi_extra=json_body(ALERT),
        dependencies=guarded,
    )
    async def receive_alert(
        request: Request,
        definition: Annotated[
            str, Query(description="Definition to run.", max_length=128)
        ] = DEFAULT_DEFINITION,
    ) -> Accepted:
        require_definition(definition)
        body, payload = await read_json(request)
        if not isinstance(payload, dict):
            raise ReceiverError(
                400, f"the body must be a JSON object (an alert payload), got {_kind(payload)}"
            )
        payload.pop(HTTP_KEY, None)  # only the receiver says what the raw request was
        signature = request.headers.get("x-pagerduty-signature")
        if signature is not None:
            headers = {"x-pagerduty-signature": signature, "content-type": request.headers["content-type"]}
            payload[HTTP_KEY] = {"headers": headers, "raw_body": body}
        extra = {"source": "receiver"}
        return await start(request, definition, payload, extra, always_key=True, size=len(body))

    @app.post(
        "/definitions/{name}/execute",
        summary="Run a definition with a payload, source, trace id, environment or incident",
        status_code=202,
        response_model=Accepted,
        responses=error_responses(400, 401, 404, 413, 415, 502, 503),
        openapi_extra=json_body(ExecuteRequest.model_json_schema()),
        dependencies=guarded,
    )
    async def execute(request: Request, name: str) -> Accepted:
        require_definition(name)
        body, data = await read_json(request)
        if not isinstance(data, dict):
            raise ReceiverError(400, f"the body must be a JSON object, got {_kind(data)}")
        try:
            spec = ExecuteRequest.model_validate(data)
        except ValidationError as exc:
            raise ReceiverError(400, f"invalid execute request: {_first_error(exc)}") from None
        extra = spec.model_dump(exclude={"payload"}, exclude_none=True)
        return await start(request, name, spec.payload, extra, always_key=False, size=len(body))

    @app.get(
        "/definitions",
        summary="List the definitions: name, version, node count, or why one is invalid",
        responses=error_responses(401),
        dependencies=guarded,
    )
    def definitions() -> list[dict[str, Any]]:
        return describe_all()

    @app.get(
        "/definitions/{name}",
        summary="One definition: its nodes and graph, version, the settings it needs, and its JSON",
        responses=error_responses(401, 404),
        dependencies=guarded,
    )
    def definition(name: str) -> dict[str, Any]:
        return describe(name, require_definition(name), full=True)

    @app.post(
        "/definitions/{name}/validate",
        summary="Validate a definition JSON under this name (empty body: the stored definition)",
        responses=error_responses(400, 401, 404, 413, 415),
        openapi_extra=json_body(DEFINITION, required=False),
        dependencies=guarded,
    )
    async def validate_definition(request: Request, name: str) -> dict[str, Any]:
        _, raw = await read_json(request, allow_empty=True)
        return await asyncio.to_thread(validate_named, name, raw)

    @app.get(
        "/healthz",
        summary="Liveness, and whether the Prefect API answers (503 when it does not)",
        responses={503: {"description": "Prefect API unreachable."}},
    )
    async def healthz(request: Request) -> JSONResponse:
        up = await reachable(request.app.state.prefect, HEALTH_TIMEOUT_SECONDS)
        prefect = "ok" if up else "unreachable"
        store = request.app.state.journal
        if store is not None:  # alerts are still taken while Prefect is away
            try:
                backlog = await asyncio.to_thread(store.backlog)
            except OpsflowError as exc:
                log.error("receiver journal: %s", exc)
                body = {"status": "unavailable", "prefect": prefect, "journal": "unreachable"}
                return JSONResponse(body, status_code=503)
            return JSONResponse({"status": "ok", "prefect": prefect, "journal_backlog": backlog})
        if up:
            return JSONResponse({"status": "ok", "prefect": prefect})
        return JSONResponse({"status": "unavailable", "prefect": prefect}, status_code=503)

    @app.get(
        "/deliveries/{delivery_id}",
        summary="A journaled alert: queued, or its flow run, or why Prefect refused it",
        response_model=Delivery,
        responses=error_responses(401, 404),
        dependencies=guarded,
    )
    async def delivery(request: Request, delivery_id: str) -> Delivery:
        store = request.app.state.journal
        if store is None:
            raise ReceiverError(404, "this receiver has no journal (start it with --journal)")
        entry = await asyncio.to_thread(store.get, delivery_id[:64])
        if entry is None and store.expired(delivery_id[:64]):
            return Delivery(delivery_id=delivery_id[:64], status=EXPIRED)
        if entry is None:
            raise ReceiverError(404, f"no delivery {delivery_id[:64]!r} in the journal")
        return Delivery(
            delivery_id=entry.id,
            definition=entry.definition,
            trace_id=entry.trace_id,
            status=entry.status,
            flow_run_id=entry.flow_run_id,
            attempts=entry.attempts,
            error=entry.error,
        )

    async def start(
        request: Request, name: str, payload: dict, extra: dict, *, always_key: bool, size: int
    ) -> Accepted:
        """Create the run. An execute with neither alerts nor an Idempotency-Key is always a new run.

        Secret shapes are scrubbed from the payload first: it is stored as the run's
        parameters (and in the journal), and everything after (key, events) sees it so.
        """
        if size > THREAD_PARSE_BYTES:
            payload, summary = await asyncio.to_thread(_scrubbed, payload)
        else:
            payload, summary = _scrubbed(payload)
        given_key = request.headers.get("idempotency-key")
        if given_key:
            key = f"opsflow-receiver:{name}:key:{given_key[:200]}"
        elif always_key or summary.alerts:
            options = {k: v for k, v in extra.items() if k != "trace_id"}
            episodes = await _episodes(request.app.state.episodes, name, summary)
            key = idempotency_key(name, payload, summary, options, episodes)
        else:
            key = None
        trace_id = extra.get("trace_id") or uuid.uuid4().hex
        parameters = {"definition": name, "payload": payload, **extra, "trace_id": trace_id}
        state = request.app.state
        if state.journal is not None:
            key = key or f"opsflow-receiver:{name}:new:{uuid.uuid4().hex}"  # no key: always a new run
            entry = await state.journal.append(key, name, parameters)
            if entry.duplicate:
                await count_repeat(summary)
            return Accepted(
                flow_run_id=entry.flow_run_id,
                definition=name,
                trace_id=entry.trace_id,
                duplicate=entry.duplicate,
                delivery_id=entry.id,
                queued=entry.status == QUEUED,
            )
        try:
            run = await create_run(state.prefect, name, parameters, key, timeout, state.slots)
        except ReceiverError as exc:
            if exc.status == 503:
                log.warning("%s: answered 503 (the sender retries)", exc.message)
            raise
        run_trace = (run.parameters or {}).get("trace_id")
        duplicate = run_trace != trace_id
        if duplicate:
            await count_repeat(summary)
        elif summary.alerts:
            emit_alert_events(summary, name, run)
        log.info(
            "%s: flow run %s%s, %d alert(s)",
            name,
            run.id,
            " (re-delivery: existing run)" if duplicate else "",
            len(summary.alerts),
        )
        return Accepted(flow_run_id=str(run.id), definition=name, trace_id=run_trace, duplicate=duplicate)

    return app


def _scrubbed(payload: dict) -> tuple[dict, Any]:
    """The payload without secret shapes (nodes.scrub says what is kept) and its summary."""
    payload, count = scrub_alert_payload(payload)
    if count:
        log.info("payload: %d secret-shaped value(s) scrubbed before storing it", count)
    return payload, summarize(payload)


async def _episodes(episodes: Episodes, name: str, summary) -> dict[str, str] | None:
    """The alerts' episodes when their format does not tell them apart; 503 if the store is away."""
    if not needs_episodes(summary.format, summary.alerts):
        return None
    try:
        return await asyncio.to_thread(episodes.number, f"{name}\n{summary.group_key}", summary.alerts)
    except OpsflowError as exc:
        log.error("receiver: %s", exc)
        raise ReceiverError(
            503, "the receiver's episode store cannot be reached; retry later", {"Retry-After": "5"}
        ) from None


def _kind(value: Any) -> str:
    return {list: "a list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)


def _first_error(exc: ValidationError | RequestValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is `{"error": "..."}`: senders and people read it, never a traceback."""

    @app.exception_handler(ReceiverError)
    async def receiver_error(request: Request, exc: ReceiverError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {_first_error(exc)}"}, status_code=400)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"error": "internal error (see the receiver's log)"}, status_code=500)


def main(host: str = "127.0.0.1", port: int = 8080, journal: bool = False) -> None:
    """Serve the receiver until interrupted (the `pipeline receiver` command)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = create_app(journal=journal)
    freeze_heap()
    uvicorn.run(app, host=host, port=port, log_level="info")
