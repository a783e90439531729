"""The alert webhook receiver: every accepted alert becomes a flow run of its definition's deployment.

An alert is answered 202 only once Prefect has created the flow run, so nothing the
receiver accepts can be lost; when Prefect cannot take it the answer is 503 and the
sender retries. Retries are safe: the run is created under an idempotency key taken
from the alerts themselves, so a re-delivered webhook finds the run already made.
With a journal (`journal=`), the 202 comes once the alert is committed to the
journal instead, and its run is created as soon as Prefect can (receiver.journal).
The routes are in receiver.routes; accepting one delivery is receiver.accept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.receiver.access import receiver_token
from deployments.receiver.dispatch import dispatch
from deployments.receiver.episodes import Episodes
from deployments.receiver.http import ReceiverError, first_error
from deployments.receiver.journal import Journal
from deployments.receiver.prefect import freeze_heap, prefect_client
from deployments.receiver.routes import DEFAULT_DEFINITION, router

__all__ = ["DEFAULT_DEFINITION", "create_app", "freeze_heap", "main"]

PREFECT_TIMEOUT_SECONDS = 10.0
# flow runs being created at once (more only contend for a SQLite-backed server's lock)
CONCURRENT_RUNS = 4

log = logging.getLogger("opsflow.receiver")


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
    app.state.token = receiver_token()
    app.state.timeout = timeout
    _install_error_handlers(app)
    app.include_router(router)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error is `{"error": "..."}`: senders and people read it, never a traceback."""

    @app.exception_handler(ReceiverError)
    async def receiver_error(request: Request, exc: ReceiverError) -> JSONResponse:
        if exc.status != 503:  # (a 503 is logged where it is decided; the sender retries it)
            # senders do not retry a 4xx: the refusal must be on record where someone looks
            definition = request.query_params.get("definition")
            where = f"{request.url.path}{f' (definition {definition})' if definition else ''}"
            log.warning("%s %s answered %d: %s", request.method, where[:300], exc.status, exc.message)
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {first_error(exc)}"}, status_code=400)

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
