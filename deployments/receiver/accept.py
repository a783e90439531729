"""Accepting one alert delivery: scrub it, key it, and create its flow run (or journal it).

Secret shapes are scrubbed from the payload first: it is stored as the run's parameters
(and in the journal), and everything after (key, events) sees it so.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from fastapi import Request

from deployments.receiver.alerts import count_repeat, emit_alert_events, idempotency_key, summarize
from deployments.receiver.episodes import Episodes, needs_episodes
from deployments.receiver.http import ReceiverError
from deployments.receiver.journal import QUEUED
from deployments.receiver.models import Accepted
from deployments.receiver.prefect import create_run
from flows.request import RunRequest
from nodes.errors import OpsflowError
from nodes.scrub import scrub_alert_payload

__all__ = ["THREAD_PARSE_BYTES", "accept"]

# parsing a large payload for its idempotency key happens off the event loop
THREAD_PARSE_BYTES = 64 * 1024

log = logging.getLogger("opsflow.receiver")


async def accept(
    request: Request, name: str, payload: dict, extra: dict, *, always_key: bool, size: int
) -> Accepted:
    """Create the run. An execute with neither alerts nor an Idempotency-Key is always a new run."""
    if size > THREAD_PARSE_BYTES:
        payload, summary = await asyncio.to_thread(_scrubbed, payload)
    else:
        payload, summary = _scrubbed(payload)
    state = request.app.state
    given_key = request.headers.get("idempotency-key")
    if given_key:
        key = f"opsflow-receiver:{name}:key:{given_key[:200]}"
    elif always_key or summary.alerts:
        options = {k: v for k, v in extra.items() if k not in ("trace_id", "http")}
        episodes = await _episodes(state.episodes, name, summary)
        key = idempotency_key(name, payload, summary, options, episodes)
    else:
        key = None
    trace_id = extra.get("trace_id") or uuid.uuid4().hex
    detected = {"alert_format": summary.format} if summary.format else {}
    parameters = RunRequest(
        definition=name, payload=payload, **{**extra, **detected, "trace_id": trace_id}
    ).parameters()
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
        run = await create_run(state.prefect, name, parameters, key, state.timeout, state.slots)
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
