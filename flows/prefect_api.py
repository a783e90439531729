"""One way to reach the Prefect API from a command, and one translation of its failures.

A command that reads or writes Prefect (history, blocks, approvals, secrets) uses the
configured API, or the local server for its duration; an API it cannot reach, or one
that refuses, becomes one clean OpsflowError (no credentials in the message).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from flows.local_server import configured_api_url, start_local_server
from flows.settings import apply_prefect_defaults
from nodes.errors import OpsflowError

__all__ = ["api_errors", "run_async", "sync_client", "with_api"]

T = TypeVar("T")


def with_api(call: Callable[[], T]) -> T:
    """Call `call()` with a Prefect API: the configured one, or the local server for its duration."""
    apply_prefect_defaults(quiet_console=True)
    server = start_local_server()
    try:
        if server is not None:
            server.wait_ready()
        return call()
    finally:
        if server is not None:
            server.stop()


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work()` (a coroutine factory) with a Prefect API; its failures become clean errors."""
    with api_errors():
        return with_api(lambda: asyncio.run(work()))  # type: ignore[arg-type]


@contextlib.contextmanager
def api_errors() -> Iterator[None]:
    """Prefect API failures as one OpsflowError: what answered what, or why it was not reached."""
    import httpx

    try:
        yield
    except httpx.HTTPStatusError as exc:
        raise OpsflowError(
            f"Prefect API answered {exc.response.status_code} to {exc.request.method} "
            f"{exc.request.url.path}: {exc.response.text[:200]}"
        ) from exc
    except httpx.HTTPError as exc:
        raise OpsflowError(f"Cannot reach the Prefect API at {_api_url()}: {exc}") from exc


@contextlib.contextmanager
def sync_client() -> Iterator[Any]:
    """A sync Prefect client; failures to reach the API become one clean OpsflowError."""
    from prefect.client.orchestration import get_client

    with api_errors(), get_client(sync_client=True) as client:
        yield client


def _api_url() -> str:
    return re.sub(r"//[^/@]*@", "//", configured_api_url() or "the local server")  # no credentials
