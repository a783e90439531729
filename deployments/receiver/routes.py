"""The receiver's routes, as module functions on one APIRouter (importable and testable alone).

What a route needs from its app (the Prefect client, the journal, the token, the
timeout) is on `request.app.state`, set by `create_app`.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from deployments.receiver.accept import accept
from deployments.receiver.access import TOKEN_ENV
from deployments.receiver.definitions import (
    check_payload,
    describe,
    describe_all,
    require_definition,
    require_webhook,
    validate_named,
)
from deployments.receiver.http import ReceiverError, first_error, kind_of, read_json
from deployments.receiver.journal import EXPIRED
from deployments.receiver.models import (
    ALERT,
    DEFINITION,
    Accepted,
    Delivery,
    ErrorBody,
    ExecuteRequest,
    error_responses,
    json_body,
)
from deployments.receiver.prefect import reachable
from nodes.errors import OpsflowError
from nodes.ingest import HTTP_KEY

__all__ = ["DEFAULT_DEFINITION", "router"]

DEFAULT_DEFINITION = "alert-triage"
HEALTH_TIMEOUT_SECONDS = 3.0

log = logging.getLogger("opsflow.receiver")

_BEARER = HTTPBearer(auto_error=False, description=f"Required when ${TOKEN_ENV} is set.")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


def authorize(request: Request, credentials: Credentials) -> None:
    """The bearer token, when the receiver has one (compared in constant time)."""
    token = request.app.state.token
    if token is None:
        return
    given = credentials.credentials.encode() if credentials else b""
    if not hmac.compare_digest(given, token.encode()):
        raise ReceiverError(401, "missing or wrong bearer token", {"WWW-Authenticate": "Bearer"})


_FORBIDDEN = "The definition declares no webhook trigger: it cannot be run over HTTP."
RUN_ERRORS = {
    **error_responses(400, 401, 404, 413, 415, 502, 503),
    403: {"model": ErrorBody, "description": _FORBIDDEN},
}

router = APIRouter()
guarded = [Depends(authorize)]


@router.post(
    "/pipeline",
    summary="Accept an alert webhook: start a flow run of the definition's deployment",
    status_code=202,
    response_model=Accepted,
    responses=RUN_ERRORS,
    openapi_extra=json_body(ALERT),
    dependencies=guarded,
)
async def receive_alert(
    request: Request,
    definition: Annotated[str, Query(description="Definition to run.", max_length=128)] = DEFAULT_DEFINITION,
) -> Accepted:
    pipeline = require_webhook(definition)
    body, payload = await read_json(request)
    if not isinstance(payload, dict):
        raise ReceiverError(400, f"the body must be a JSON object (an alert payload), got {kind_of(payload)}")
    check_payload(pipeline, payload)
    payload.pop(HTTP_KEY, None)  # the raw request is the run's `http`, never something a sender sets
    extra: dict[str, Any] = {"source": "receiver"}
    signature = request.headers.get("x-pagerduty-signature")
    if signature is not None:  # a signed format checks the signature against these exact bytes
        headers = {"x-pagerduty-signature": signature, "content-type": request.headers["content-type"]}
        extra["http"] = {"headers": headers, "raw_body": body}
    return await accept(request, definition, payload, extra, always_key=True, size=len(body))


@router.post(
    "/definitions/{name}/execute",
    summary="Run a definition with a payload, source, trace id, environment or incident",
    status_code=202,
    response_model=Accepted,
    responses=RUN_ERRORS,
    openapi_extra=json_body(ExecuteRequest.model_json_schema()),
    dependencies=guarded,
)
async def execute(request: Request, name: str) -> Accepted:
    pipeline = require_webhook(name)
    body, data = await read_json(request)
    if not isinstance(data, dict):
        raise ReceiverError(400, f"the body must be a JSON object, got {kind_of(data)}")
    try:
        spec = ExecuteRequest.model_validate(data)
    except ValidationError as exc:
        raise ReceiverError(400, f"invalid execute request: {first_error(exc)}") from None
    check_payload(pipeline, spec.payload)
    extra = spec.model_dump(exclude={"payload"}, exclude_none=True)
    return await accept(request, name, spec.payload, extra, always_key=False, size=len(body))


@router.get(
    "/definitions",
    summary="List the definitions: name, version, node count, or why one is invalid",
    responses=error_responses(401),
    dependencies=guarded,
)
def definitions() -> list[dict[str, Any]]:
    return describe_all()


@router.get(
    "/definitions/{name}",
    summary="One definition: its nodes and graph, version, the settings it needs, and its JSON",
    responses=error_responses(401, 404),
    dependencies=guarded,
)
def definition(name: str) -> dict[str, Any]:
    return describe(name, require_definition(name), full=True)


@router.post(
    "/definitions/{name}/validate",
    summary="Validate a definition JSON under this name (empty body: the stored definition)",
    responses=error_responses(400, 401, 404, 413, 415),
    openapi_extra=json_body(DEFINITION, required=False),
    dependencies=guarded,
)
async def validate_definition(request: Request, name: str) -> dict[str, Any]:
    _, raw = await read_json(request, allow_empty=True)
    return await asyncio.to_thread(validate_named, name, raw)


@router.get(
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


@router.get(
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
