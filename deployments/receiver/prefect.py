"""The receiver's Prefect side: its API client, and creating a flow run or saying why not."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from typing import Any

from deployments.receiver.http import ReceiverError
from flows.request import FLOW_NAME

__all__ = ["FLOW_NAME", "create_run", "freeze_heap", "prefect_client", "reachable"]


log = logging.getLogger("opsflow.receiver")

DEPLOYMENT_ID_SECONDS = 60.0
# a Prefect server on SQLite answers 503 when a write finds the database locked (another
# write committed meanwhile); Prefect's client waits 2 s, then 4 s, before it tries again
BUSY_RETRY_DELAYS = (0.05, 0.1, 0.2, 0.4)
# (API, deployment) → (id, the parameters its flow takes, until)
_DEPLOYMENT_IDS: dict[tuple[str, str], tuple[Any, frozenset[str], float]] = {}
# parameters the receiver adds as hints; a deployment of older flow code (a worker not yet
# upgraded) has none of them, and its flow would refuse a run that carried one
HINTS = ("alert_format",)

# Prefect's own wording when a run's parameters exceed the server's size limit
_PARAMETERS_TOO_BIG = re.compile(r"Flow run parameters must be less than [\d,]+ bytes[^.\"]*")


@contextlib.asynccontextmanager
async def prefect_client(api_url: str | None):
    """A Prefect client for `api_url`, else for the configured API (never an ephemeral one)."""
    import httpx
    from prefect.client.orchestration import PrefectClient
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    from flows.local_server import configured_api_url

    url = api_url or configured_api_url()
    if not url:
        raise RuntimeError("the receiver needs a Prefect API: set PREFECT_API_URL")
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16, keepalive_expiry=25)
    client = PrefectClient(
        url,
        auth_string=PREFECT_API_AUTH_STRING.value(),
        api_key=PREFECT_API_KEY.value(),
        httpx_settings={"limits": limits},
    )
    _retry_busy_quickly(client)
    async with client:
        yield client


class _BusyRetry:
    """An httpx transport that re-sends a request Prefect answered 503 without Retry-After.

    That answer means the request's database transaction was rolled back, so sending it
    again is what Prefect's client does anyway, only sooner: in ~0.1 s instead of 2-6 s
    (the p50/p95 of an alert's latency on SQLite). A 503 that persists still reaches
    Prefect's client, which backs off as before.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def handle_async_request(self, request):
        for delay in BUSY_RETRY_DELAYS:
            response = await self.inner.handle_async_request(request)
            if response.status_code != 503 or "retry-after" in response.headers:
                return response
            await response.aclose()
            await asyncio.sleep(delay)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def __aenter__(self):
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.inner.__aexit__(*exc_info)


def _retry_busy_quickly(client) -> None:
    """Wrap the transport of the client's httpx client (TLS and limits stay as Prefect set them)."""
    http = getattr(client, "_client", None)
    if http is None:
        return
    inner = getattr(http, "_transport", None)
    if inner is not None and hasattr(inner, "handle_async_request") and not isinstance(inner, _BusyRetry):
        http._transport = _BusyRetry(inner)


async def create_run(
    client,
    name: str,
    parameters: dict[str, Any],
    key: str | None,
    timeout: float,
    slots: asyncio.Semaphore,
):
    """Create the flow run of deployment `run-pipeline/<name>` and return it once Prefect has it.

    At most `slots` creations run at once: a Prefect server on SQLite serialises its
    writes, and many concurrent ones end in lock errors and client back-off that
    slow every request. Waiting for a slot counts against `timeout`, so a burst
    larger than Prefect can absorb is answered 503 (retry) rather than queued forever.
    Raises the ReceiverError that tells the sender what to do: 404 (no such
    deployment), 503 (retry: unreachable, 5xx, slower than `timeout`), 413 (too
    large for Prefect), 502 (refused).
    """
    import httpx
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Scheduled

    deployment = f"{FLOW_NAME}/{name}"
    try:
        async with asyncio.timeout(timeout), slots:
            for cached in (True, False):
                deployment_id, takes = await _deployment_id(client, deployment, cached=cached)
                sent = {k: v for k, v in parameters.items() if k not in HINTS or k in takes}
                try:
                    return await client.create_flow_run_from_deployment(
                        deployment_id, parameters=sent, state=Scheduled(), idempotency_key=key
                    )
                except httpx.HTTPStatusError as exc:
                    if exc.response.status_code != 404:
                        raise
                    _DEPLOYMENT_IDS.pop((str(client.api_url), deployment), None)  # deleted since
                    if not cached:
                        raise _not_deployed(name, deployment) from None
    except ObjectNotFound:
        raise _not_deployed(name, deployment) from None
    except TimeoutError:
        raise _unavailable(f"no answer within {timeout:g} s") from None
    except httpx.HTTPStatusError as exc:
        status = exc.response.status_code
        if status >= 500 or status in (408, 429):
            raise _unavailable(f"HTTP {status}") from None
        detail = _detail(exc.response)
        too_big = _PARAMETERS_TOO_BIG.search(exc.response.text)
        if status == 422 and too_big:
            raise ReceiverError(
                413,
                f"{too_big.group(0)}: the Prefect server refuses runs this large "
                "(its PREFECT_SERVER_API_MAX_PARAMETER_SIZE); send a smaller payload",
            ) from None
        log.error("Prefect refused a flow run of %s: HTTP %s %s", deployment, status, detail)
        raise ReceiverError(
            502, f"Prefect refused the flow run of {deployment!r}: HTTP {status} {detail}"
        ) from None
    except (httpx.TransportError, OSError) as exc:
        raise _unavailable(type(exc).__name__) from None
    except (ValueError, RecursionError) as exc:  # read_json refuses these first; a backstop
        raise ReceiverError(400, f"the payload cannot be sent to Prefect ({type(exc).__name__})") from None


async def _deployment_id(client, deployment: str, *, cached: bool):
    """The deployment's id and the parameters its flow takes, read at most once a minute per API:
    a run then costs Prefect one call, not two (`run_deployment` reads the deployment every
    time). A deployment deleted and re-created under the same name is found again by the
    caller's retry."""
    slot = (str(client.api_url), deployment)
    known = _DEPLOYMENT_IDS.get(slot)
    if cached and known and known[2] > time.monotonic():
        return known[0], known[1]
    found = await client.read_deployment_by_name(deployment)
    takes = frozenset(((found.parameter_openapi_schema or {}).get("properties") or {}).keys())
    _DEPLOYMENT_IDS[slot] = (found.id, takes, time.monotonic() + DEPLOYMENT_ID_SECONDS)
    return found.id, takes


def freeze_heap() -> None:
    """Leave the long-lived heap (Prefect, FastAPI, pydantic) out of garbage collection:
    for a process about to serve the receiver, once its imports are done.

    A full collection walks every object; with Prefect imported that stalled the
    receiver 70-135 ms at a time during a burst (the p99 of every request it caught).
    The modules a request imports lazily are imported first, so they are frozen too.
    """
    import gc

    import prefect.client.orchestration  # noqa: F401 - the receiver's lazy imports
    import prefect.exceptions  # noqa: F401
    import prefect.states  # noqa: F401
    import sqlalchemy  # noqa: F401

    gc.collect()
    gc.freeze()


async def reachable(client, timeout: float) -> bool:
    """Whether the Prefect API answers its health check within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            return await client.api_healthcheck() is None
    except TimeoutError:
        return False


def _not_deployed(name: str, deployment: str) -> ReceiverError:
    return ReceiverError(
        404,
        f"definition {name!r} has no deployment {deployment!r} in Prefect: "
        "create it with `pipeline serve` (or `prefect deploy --all`)",
    )


def _unavailable(reason: str) -> ReceiverError:
    return ReceiverError(503, f"Prefect API unavailable ({reason}); retry later", {"Retry-After": "5"})


def _detail(response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail or response.text)[:500]
