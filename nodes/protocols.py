"""What a member of each registry must have and may have: one `typing.Protocol` per registry.

`nodes.NODE_TYPES`, `nodes.notify.DRIVERS`, `nodes.intelligence.PROVIDERS` and
`nodes.ingest.FORMATS` map names to modules; these classes are the modules' contract (as
httpx's `BaseTransport`, Prefect's `NotificationBlock.notify`, llm's `hookspecs.py`), and
`tests/test_registry_standards.py` checks every registered member against them. Members are
modules, so `config` parameters are typed `Any`: each member takes its own `Config`.

An optional member is read only through the function named beside it, which holds its
default, so no caller looks for it with `hasattr`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from pydantic import BaseModel

if TYPE_CHECKING:
    import httpx

    from nodes.base import NodeContext
    from nodes.ingest.alert import Parsed
    from nodes.intelligence.prompt import Prompt
    from nodes.notify.message import Message

__all__ = [
    "Driver",
    "Format",
    "NodeType",
    "Provider",
    "api_key_env",
    "config_resolver",
    "preview_of",
    "required_settings_of",
]


@runtime_checkable
class NodeType(Protocol):
    """A node type (`nodes.NODE_TYPES`): a module, or an object, that turns a config into an output.

    `Config` refuses unknown keys: extra="forbid", or extra keys handed to a member of another
    registry whose own `Config` forbids them (notify's driver settings, intelligence's provider
    settings). A node type may also have:

    - `resolve_config(config, ctx) -> dict`: resolve the raw config's `${...}` and `{{ }}`
      itself, keeping what the node renders later (notify keeps a webhook body's templates for
      its `message`). Default: `templating.resolve`. Read through `config_resolver`.
    - `preview(config, ctx) -> list[dict]`: what a dry run would send or start, secrets masked,
      doing nothing. Default: nothing to show. Read through `preview_of`.
    - `required_settings(config) -> list[str]`: environment variables the raw config relies on
      without naming them (a provider's API key), for `pipeline doctor`. Default: none. Read
      through `required_settings_of`.
    """

    Config: type[BaseModel]

    def run(self, config: Any, ctx: NodeContext) -> dict[str, Any]:
        """The node's output, JSON-able; a failure is a raised `NodeError` (retryable or not)."""
        ...


@runtime_checkable
class Driver(Protocol):
    """A notify driver (`nodes.notify.DRIVERS`): delivers one `Message` to one channel.

    `Config` has extra="forbid", SecretStr for URLs and keys, and `timeout_seconds` (default
    10) when it talks to a server. `HTTP` is True when `send` uses the `client` it is given,
    so the notify node pools one `httpx.Client` for a fan-out. An HTTP driver builds its
    request once, as an `Outbound` (`nodes.notify._http`): `send` executes it and `preview`
    masks it, so a dry run shows what would be sent. No optional members.
    """

    Config: type[BaseModel]
    HTTP: bool

    def send(
        self, config: Any, message: Message, ctx: NodeContext, client: httpx.Client | None = None
    ) -> dict[str, Any]:
        """Deliver; the delivery record (`driver`, `status`, `http_status`, `message_id`, `error`,
        optional `incident_state` to keep on the incident), or a raised `DeliveryError`."""
        ...

    def preview(self, config: Any, message: Message) -> dict[str, Any]:
        """What `send` would send, sending nothing: `driver`, `method`, `url` (host only),
        `headers` (when any, values masked), `body`; secrets read `***`."""
        ...


@runtime_checkable
class Provider(Protocol):
    """An intelligence provider (`nodes.intelligence.PROVIDERS`): analyses one run.

    `Config` has extra="forbid" and SecretStr keys. `USES_PROMPT` is False when the provider
    reads the run directly (the local rules) and needs no prompt built. A provider may also
    have `API_KEY_ENV`, the environment variable its key is read from when the config sets
    none. Default: it needs no key. Read through `api_key_env`.
    """

    Config: type[BaseModel]
    USES_PROMPT: bool

    def analyze(
        self, config: Any, ctx: NodeContext, prompt: Prompt | None, *, client: Any = None
    ) -> dict[str, Any]:
        """`{"analysis": Analysis, "model", "input_tokens", "output_tokens"}`, or a raised
        `ProviderError`, retryable only when another try may succeed."""
        ...


@runtime_checkable
class Format(Protocol):
    """An ingest format (`nodes.ingest.FORMATS`; their order is the order `auto` tries them in).

    `Config` has extra="forbid". `SHAPE` says what a payload of the format looks like, for
    the error that names every format when none matches. No optional members.
    """

    Config: type[BaseModel]
    SHAPE: str

    def detect(self, payload: dict[str, Any]) -> bool:
        """Whether `payload` has this format's shape (cheap: `auto` asks every format)."""
        ...

    def parse(self, payload: dict[str, Any], config: Any = None) -> Parsed:
        """The payload's normalised alerts (`nodes.ingest.alert`), or a raised `IngestError`."""
        ...


# -- optional members, with their defaults -------------------------------------------------------


def config_resolver(node_type: NodeType) -> Callable[[dict[str, Any], NodeContext], dict[str, Any]]:
    """The node type's `resolve_config`, else `templating.resolve` (every string resolved)."""
    from nodes.templating import resolve

    return getattr(node_type, "resolve_config", resolve)


def preview_of(node_type: NodeType) -> Callable[[dict[str, Any], NodeContext], list[dict[str, Any]]] | None:
    """The node type's `preview`, or None: a dry run has nothing to show for it."""
    return getattr(node_type, "preview", None)


def required_settings_of(node_type: NodeType) -> Callable[[dict[str, Any]], list[str]]:
    """The node type's `required_settings`, else one that names none."""
    return getattr(node_type, "required_settings", _no_settings)


def _no_settings(config: dict[str, Any]) -> list[str]:
    return []


def api_key_env(provider: Provider) -> str | None:
    """The provider's `API_KEY_ENV`, or None: it needs no key."""
    return getattr(provider, "API_KEY_ENV", None)
