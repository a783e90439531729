"""Every error opsflow raises on purpose, in one tree.

    OpsflowError                  base: a message meant for a person, never a traceback
    ├── UsageError                a request that cannot be met as asked: a name or id that
    │                             does not exist, a run not waiting for an answer (exit 2)
    ├── DefinitionError           a definition that cannot be loaded or is invalid;
    │                             `.problems` lists each problem, naming the node
    └── NodeError                 a node failed; `.retryable` tells Prefect whether to retry
        ├── ConfigError           a node's config is wrong once resolved at run time
        ├── TemplateError         a `{{ }}` template or `${...}` reference cannot be resolved
        ├── ProviderError         an AI provider failed (HTTP, quota, refusal, bad JSON)
        ├── DeliveryError         a notification was not delivered
        └── IngestError           an alert payload cannot be parsed or stored

    Raised above nodes (same base, defined where they are answered):
    ├── deployments.cli.app.Exit             a CLI user mistake: message and exit code
    └── deployments.receiver.http.ReceiverError  an HTTP answer for a webhook sender:
                                              status, message, headers

Errors of the layer below (httpx, openai, smtplib, SQLAlchemy) are translated where
they are caught, with the cause chained (`raise DeliveryError(...) from exc`).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DefinitionError",
    "DeliveryError",
    "IngestError",
    "NodeError",
    "OpsflowError",
    "ProviderError",
    "TemplateError",
    "UsageError",
]


class OpsflowError(Exception):
    """Base of every error opsflow raises on purpose."""


class UsageError(OpsflowError):
    """The request is wrong, not the system: the CLI exits 2, as for a usage mistake."""


class DefinitionError(OpsflowError):
    """A pipeline definition that cannot be used; `problems` has one line per problem."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class NodeError(OpsflowError):
    """A node failed. Only `retryable` errors are retried by the node's retry policy.

    `retry_after` (seconds) carries a server's Retry-After hint; `details` is a small
    JSON-able dict that ends up in the node result's `errors` entry. `duration_ms` and
    `unexpected` (a bug, not an expected failure) are set only once the error has left
    a handler (`nodes.runtime.execute_node`); before that they are absent.
    """

    duration_ms: float
    unexpected: bool
    attempts: int  # set by the flow: the attempt that raised it

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        details: dict | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.details = details or {}


class ConfigError(NodeError):
    """A node's config is invalid once its templates and references are resolved."""


class TemplateError(NodeError):
    """A `{{ }}` template or a `${...}` reference could not be resolved."""


class ProviderError(NodeError):
    """An AI provider call failed."""


class DeliveryError(NodeError):
    """A notification could not be delivered."""


class IngestError(NodeError):
    """An alert payload could not be parsed, verified or stored."""
