"""The journal's dispatcher: a flow run for every journaled alert, at the pace Prefect allows.

It runs beside the receiver (and in any other receiver sharing the journal). An entry
is retried with back-off while Prefect is unreachable or slow, and set aside, with
Prefect's reason logged and kept, only when Prefect refuses the run for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from deployments.receiver.alerts import emit_alert_events, summarize
from deployments.receiver.http import ReceiverError
from deployments.receiver.journal import Claimed, Journal
from deployments.receiver.prefect import create_run
from nodes.errors import OpsflowError

__all__ = ["dispatch"]

log = logging.getLogger("opsflow.receiver")

CLAIM_BATCH = 64
IDLE_POLL_SECONDS = 1.0  # other receivers' entries, and entries whose back-off ended
MAX_PAUSE_SECONDS = 15.0  # the longest wait between probes of an unavailable Prefect


async def dispatch(journal: Journal, client, *, slots: asyncio.Semaphore, timeout: float) -> None:
    """Create the runs of due entries until cancelled.

    While Prefect is unavailable the dispatcher backs off as a whole and probes with
    one entry at a time, so an outage costs a log line, not a request per alert.
    """
    pause = 0.0
    while True:
        journal.wakeup.clear()
        try:
            claimed = await asyncio.to_thread(journal.claim, 1 if pause else CLAIM_BATCH)
        except OpsflowError as exc:
            log.error("receiver journal: %s", exc)
            claimed = []
        if not claimed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_POLL_SECONDS):
                    await journal.wakeup.wait()
            continue
        created: dict[str, str] = {}
        try:
            outcomes = await asyncio.gather(
                *(_create(journal, client, entry, slots, timeout, created) for entry in claimed)
            )
        except asyncio.CancelledError:  # stopping: the next receiver need not wait out the lease
            with contextlib.suppress(OpsflowError):
                if created:
                    journal.created(created)
                journal.release([entry.id for entry in claimed])
            raise
        if created:
            try:
                await asyncio.to_thread(journal.created, created)
            except OpsflowError as exc:  # their runs exist: redone under the same keys when the lease ends
                log.error(
                    "receiver journal: %s (%d entries are retried when their lease ends)", exc, len(created)
                )
        unavailable = [reason for reason in outcomes if reason]
        if unavailable:
            if not pause:
                log.warning(
                    "%s: %d alert(s) wait in the journal; their runs are created once Prefect answers",
                    unavailable[0],
                    journal.queued,
                )
            pause = min(MAX_PAUSE_SECONDS, max(0.5, pause * 2))
            await asyncio.sleep(pause)
        elif pause:
            pause = 0.0
            log.warning(
                "Prefect API answers again: creating the runs of %d journaled alert(s)", journal.queued
            )


async def _create(
    journal: Journal,
    client,
    entry: Claimed,
    slots: asyncio.Semaphore,
    timeout: float,
    created: dict[str, str],
) -> str | None:
    """One entry's run, added to `created` (recorded for the whole claim in one commit);
    returns why Prefect is unavailable, if it is.

    A journal write that fails here is redone when the entry's lease ends.
    """
    try:
        run = await create_run(client, entry.definition, entry.parameters, entry.key, timeout, slots)
    except ReceiverError as exc:
        try:
            if exc.status != 503:
                log.error("journaled alert %s (%s) will not run: %s", entry.id, entry.definition, exc.message)
                await asyncio.to_thread(journal.failed, entry.id, exc.message)
                return None
            await asyncio.to_thread(journal.retry_later, entry, exc.message)
        except OpsflowError as journal_error:
            log.error(
                "receiver journal: %s (entry %s is retried when its lease ends)", journal_error, entry.id
            )
        return exc.message if exc.status == 503 else None
    except Exception as exc:  # noqa: BLE001 - an entry must never be dropped by a surprise
        log.exception("journaled alert %s: unexpected error creating its run", entry.id)
        with contextlib.suppress(OpsflowError):  # else retried when its lease ends
            await asyncio.to_thread(journal.retry_later, entry, f"unexpected error: {type(exc).__name__}")
        return None
    created[entry.id] = str(run.id)
    if (run.parameters or {}).get("trace_id") == entry.parameters.get("trace_id"):
        summary = summarize(entry.parameters.get("payload") or {})
        if summary.alerts:
            emit_alert_events(summary, entry.definition, run)
    return None
