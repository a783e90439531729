"""HTTP plumbing of the notify drivers: each request built once (`Outbound`), failures as DeliveryError."""

from __future__ import annotations

import dataclasses
import email.utils
import functools
import json
import os
import time
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from nodes.base import REDACTED, Secrets
from nodes.errors import ConfigError, DeliveryError

if TYPE_CHECKING:
    import httpx

    from nodes.base import NodeContext

__all__ = [
    "Outbound",
    "check_status",
    "delivered",
    "new_client",
    "request",
    "retry_after",
    "secret_or_env",
    "target",
]

DEFAULT_TIMEOUT = 10.0
_ERROR_TEXT_LIMIT = 300


@functools.lru_cache(maxsize=1)
def _tls_context():
    """Loading the CA bundle costs ~60 ms; one context per process serves every client."""
    import httpx

    return httpx.create_ssl_context()


def new_client(connections: int = 10) -> httpx.Client:
    """An httpx client sharing the process's TLS context, pooling `connections` connections."""
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.Client(verify=_tls_context(), limits=limits)


@dataclasses.dataclass(frozen=True, repr=False)
class Outbound:
    """One request of a driver, built once: `send` executes it and `preview` masks it, so a dry
    run shows what would be sent.

    `secrets` are the credentials it carries (a webhook URL, a token header, a routing key in
    the body): sending adds them to the run's secrets, and a preview shows them as ***.
    """

    method: str
    url: str
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    body: Any = None
    secrets: tuple[str, ...] = ()

    def __repr__(self) -> str:  # the URL and headers are credentials: a log line shows neither
        return f"Outbound({self.method} {target(self.url)})"

    def send(
        self, driver: str, ctx: NodeContext, timeout: float, client: httpx.Client | None = None
    ) -> httpx.Response:
        """Execute it within what is left of the attempt; anything but 2xx is raised (`check_status`)."""
        for secret in self.secrets:
            ctx.secrets.add(secret)
        response = request(
            driver,
            self.method,
            self.url,
            client=client,
            timeout=ctx.time_left(timeout),
            json_body=self.body,
            headers=self.headers or None,
        )
        check_status(driver, self.url, response)
        return response

    def preview(self, driver: str) -> dict[str, Any]:
        """`driver`, `method`, `url` (scheme and host), `headers` (when any: every value ***), `body`."""
        shown: dict[str, Any] = {"driver": driver, "method": self.method, "url": target(self.url)}
        if self.headers:
            shown["headers"] = {name: REDACTED for name in self.headers}
        shown["body"] = _masked(self.body, {s for s in self.secrets if s})
        return shown


def _masked(value: Any, secrets: set[str]) -> Any:
    """`value` with each secret as ***: a string that is one (however short), or contains one."""
    scrub = Secrets(secrets)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return REDACTED if item in secrets else scrub.redact(item)
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value)


def secret_or_env(value: SecretStr | None, env: str, driver: str, field: str, *, strict: bool = True) -> str:
    """The configured secret, else the environment variable `env`; neither is a config error,
    except for a preview (`strict=False`), where it reads ***."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    found = os.environ.get(env)
    if found:
        return found
    if not strict:
        return REDACTED
    raise ConfigError(f"{driver}: no {field} configured and {env} is not set")


def target(url: str | None) -> str:
    """What may be shown of a URL: scheme and host. Paths of webhook URLs are credentials."""
    if not url:
        return REDACTED
    import httpx

    try:
        parsed = httpx.URL(url)
    except Exception:
        return REDACTED
    if not parsed.host:
        return REDACTED
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}/{REDACTED}"


def request(
    driver: str,
    method: str,
    url: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    json_body: Any = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one request; timeouts and connection failures become retryable DeliveryErrors.

    A caller's `client` is reused (connection pooling across a fan-out); without one a
    client lives for this request only.
    """
    import httpx

    where = f"{driver} {target(url)}"
    own = client is None
    session = client if client is not None else new_client(1)
    try:
        return session.request(method, url, json=json_body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{where}: no answer within {timeout:g}s", retryable=True) from exc
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise DeliveryError(f"{driver}: invalid URL {target(url)}", retryable=False) from exc
    except httpx.TransportError as exc:
        reason = _scrub(str(exc) or type(exc).__name__, url)
        raise DeliveryError(f"{where}: connection failed: {reason}", retryable=True) from exc
    finally:
        if own:
            session.close()


def check_status(driver: str, url: str, response: httpx.Response, *, error_text: str | None = None) -> None:
    """Raise for anything but 2xx: 429 and 5xx retryable (with Retry-After), other 4xx not."""
    status = response.status_code
    if 200 <= status < 300:
        return
    text = error_text if error_text is not None else api_error_text(response)
    where = f"{driver} {target(url)}"
    if status == 429:
        raise DeliveryError(
            f"{where}: rate limited (HTTP 429): {text}",
            retryable=True,
            retry_after=retry_after(response),
            details={"http_status": status},
        )
    raise DeliveryError(
        f"{where}: HTTP {status}: {text}",
        retryable=status >= 500 or status == 408,
        retry_after=retry_after(response) if status == 503 else None,
        details={"http_status": status},
    )


def api_error_text(response: httpx.Response) -> str:
    """The API's own words for a failure: a JSON message/error field, else the body text."""
    body = response.text.strip()
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        parts = [str(data[k]) for k in ("error", "status", "message") if isinstance(data.get(k), str)]
        errors = data.get("errors")
        if isinstance(errors, list):
            parts.extend(str(e) for e in errors[:5])
        if parts:
            body = ": ".join(dict.fromkeys(parts))
    body = body or response.reason_phrase or "no body"
    return body[:_ERROR_TEXT_LIMIT] + ("…" if len(body) > _ERROR_TEXT_LIMIT else "")


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait: a JSON `retry_after` (Discord, exact), else the Retry-After header."""
    try:
        data = response.json()
        if isinstance(data, dict) and isinstance(data.get("retry_after"), int | float):
            return max(0.0, float(data["retry_after"]))
    except ValueError:
        pass
    header = response.headers.get("Retry-After")
    if not header:
        return None
    try:
        return max(0.0, float(header))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def delivered(driver: str, response: httpx.Response | None = None, **extra: Any) -> dict[str, Any]:
    """A delivery record: the same keys for every driver, so results read alike."""
    record: dict[str, Any] = {
        "driver": driver,
        "status": "delivered",
        "http_status": response.status_code if response is not None else None,
        "message_id": None,
        "error": None,
    }
    record.update(extra)
    return record


def _scrub(text: str, url: str) -> str:
    """Remove the URL and its path from a transport error text (webhook paths are secrets)."""
    import httpx

    text = text.replace(url, REDACTED)
    try:
        path = httpx.URL(url).raw_path.decode("ascii", "replace")
    except Exception:
        return text
    return text.replace(path, REDACTED) if len(path) > 1 else text
