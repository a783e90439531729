"""What a node handler receives besides its config: the run's context and its secrets."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "NodeContext",
    "RedactingLogger",
    "RunInfo",
    "Secrets",
    "is_secret_setting",
    "typed_in_secrets",
    "used_forms",
]

REDACTED = "***"


class Secrets:
    """The secret values resolved during one run, so that any text can be scrubbed of them.

    Values shorter than 4 characters are not tracked: replacing them would mangle
    ordinary text and they protect nothing. With each value go the forms it takes
    once used (see `used_forms`), since an upstream error may echo any of them.
    """

    def __init__(self, values: set[str] | None = None):
        self._values: set[str] = set()
        self._forms: set[str] = set()
        for value in values or ():
            self.add(value)

    def add(self, value: str) -> None:
        if isinstance(value, str) and len(value) >= 4:
            self._values.add(value)
            self._forms.update(used_forms(value))

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __len__(self) -> int:
        return len(self._values)

    def redact(self, value: Any) -> Any:
        """Return `value` (str, or JSON-like structure) with every secret replaced by ***."""
        if not self._values:
            return value
        if isinstance(value, str):
            # longest first, so a secret containing another is replaced whole
            for secret in sorted(self._values | self._forms, key=len, reverse=True):
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.redact(v) for v in value]
        return value


# a setting whose name says it holds a credential
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|PWD|CREDENTIAL|AUTH|WEBHOOK|DSN|PRIVATE|SIGNING", re.I)
# a value shaped like a key or token: one long word of letters, digits and -_.+/=, whose
# characters are too varied for a name (6+ digits, or upper and lower case and a digit)
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.+/=]{20,}")


def _token_shaped(value: str) -> bool:
    if not _TOKEN_CHARS.fullmatch(value):
        return False
    digits = sum(c.isdigit() for c in value)
    return digits >= 6 or (digits > 0 and value != value.lower() and value != value.upper())


def is_secret_setting(name: str, value: str) -> bool:
    """Whether a `${NAME}` value must be scrubbed from everything shown: by its name or its shape.

    `${ENVIRONMENT}` = `prod` is not: scrubbing it turned "production" into "***uction".
    Keys, tokens, passwords, webhook URLs and URLs with credentials are, whatever they are called.
    """
    if _SECRET_NAME.search(name) or _token_shaped(value):
        return True
    if "://" in value:
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(value.strip())
        except ValueError:
            return True
        tail = parts.path.strip("/") + parts.query
        return bool(parts.password) or len(tail) >= _MIN_URL_PART
    return False


# a URL's path or query shorter than this (`/v1`, `/api`) is no credential worth a *** everywhere
_MIN_URL_PART = 8


def used_forms(value: str) -> set[str]:
    """How a secret reads once sent: JSON-escaped, URL-encoded, and for a URL the parts a server
    echoes back in its errors (path, query, userinfo password, the Basic header made of it).

    A webhook URL is a secret because of its path; a server answering `Cannot POST /hooks/T0/B0/XYZ`
    would otherwise put the credential into the node's error, logs and results.
    """
    import base64
    import json
    from urllib.parse import quote, unquote, urlsplit

    forms = {json.dumps(value)[1:-1], quote(value, safe="")}
    if "://" in value:
        try:
            parts = urlsplit(value.strip())
            password = parts.password
        except ValueError:
            parts, password = None, None
        if parts is not None and parts.scheme in ("http", "https") and parts.netloc:
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            forms.update(p for p in (parts.path, parts.query, tail) if len(p) >= _MIN_URL_PART)
            if password:
                user, password = unquote(parts.username or ""), unquote(password)
                forms.add(password)
                forms.add(base64.b64encode(f"{user}:{password}".encode()).decode())
    return {form for form in forms if form != value and len(form) >= 4}


def typed_in_secrets(model: Any) -> set[str]:
    """The value of every `SecretStr` in a validated config: its fields, nested models (private
    ones too, where the notify and intelligence configs keep driver settings), dicts and lists.

    A key typed into a definition is as secret as a `${...}` one, so whatever shows a
    definition's config (describe, dry-run, the receiver's GET) can mask these values as well.
    """
    from pydantic import BaseModel, SecretStr

    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, SecretStr):
            found.add(value.get_secret_value())
        elif isinstance(value, BaseModel):
            for name in type(value).model_fields:
                walk(getattr(value, name))
            for private in (value.__pydantic_private__ or {}).values():
                walk(private)
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple):
            for item in value:
                walk(item)

    walk(model)
    return {value for value in found if value}


class RedactingLogger(logging.LoggerAdapter):
    """A logger that scrubs the run's secrets from every message before it is emitted."""

    def __init__(self, logger: logging.Logger | logging.LoggerAdapter, secrets: Secrets):
        super().__init__(logger, {})
        self.secrets = secrets

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        if self.isEnabledFor(level):
            text = str(msg) % args if args else str(msg)
            self.logger.log(level, self.secrets.redact(text), **kwargs)


@dataclass
class RunInfo:
    """Identity of the run a node belongs to."""

    trace_id: str
    run_id: str | None = None
    definition: str = ""
    definition_version: str = ""
    source: str = "cli"
    environment: str = "development"
    # which environment settings the definition refers to are set (names only, never values),
    # so `when` can route: `run.configured.SLACK_WEBHOOK_URL`
    configured: dict[str, bool] = field(default_factory=dict)
    ui_url: str | None = None  # the run's page in the Prefect UI, for a notification to link to
    status: str | None = None  # set for pipeline-level notifications: the run's final state
    error: str | None = None
    # where a definition's relative paths start (a command node's `cwd`, its schema files): the
    # definition file's directory, or the process's working directory for an inline or block one
    definition_dir: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "configured": self.configured,
            "ui_url": self.ui_url,
            "status": self.status,
            "error": self.error,
            "trace_id": self.trace_id,
            "run_id": self.run_id,
            "definition": self.definition,
            "definition_version": self.definition_version,
            "source": self.source,
            "environment": self.environment,
        }


@dataclass
class NodeContext:
    """The run as a node sees it.

    `nodes` maps earlier node ids to their outputs; `incident` is set once an ingest
    node ran; `params` holds the definition's typed parameters, checked and defaulted.
    `secret_lookup` resolves `${secret:NAME}` (the flow passes Prefect's
    Secret block; nodes never import Prefect). `secrets` collects every resolved
    secret value so results, logs and errors can be scrubbed.
    """

    run: RunInfo
    node_id: str = ""
    payload: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # the raw webhook request when the receiver started the run ({"headers", "raw_body"}),
    # for a format that verifies a signature; never part of the payload or the templates
    http: dict[str, Any] | None = None
    # the payload's alert format as the receiver detected it (a hint for ingest's `auto`)
    alert_format: str | None = None
    nodes: dict[str, Any] = field(default_factory=dict)
    incident: dict[str, Any] | None = None
    secrets: Secrets = field(default_factory=Secrets)
    secret_lookup: Callable[[str], str] | None = None
    log: logging.Logger | logging.LoggerAdapter = field(
        default_factory=lambda: logging.getLogger("opsflow.nodes")
    )
    dry_run: bool = False
    attempt: int = 1
    max_attempts: int = 1
    # time.monotonic() by which this attempt must be over (its timeout from its start):
    # a given-up attempt may still be running in its thread, and must not act after it
    deadline: float | None = None
    # set once the attempt is over (timed out, cancelled, abandoned): a handler still running in
    # its thread stops what it started (a command node kills its process group)
    stop: threading.Event | None = None

    @property
    def last_attempt(self) -> bool:
        """True on the node's final try: the moment to fall back rather than raise."""
        return self.attempt >= self.max_attempts

    def time_left(self, wanted: float, *, keep: float = 0.0) -> float:
        """`wanted` seconds, cut to what is left of the attempt (less `keep`, saved for later work).

        Every blocking call a handler makes (HTTP, SMTP, a model) takes its timeout from
        here, so an attempt the node's timeout gave up cannot send anything afterwards.
        Raises a retryable NodeError when the attempt has no time left at all.
        """
        if self.deadline is None:
            return wanted
        left = self.deadline - time.monotonic() - keep
        if left <= 0:
            from nodes.errors import NodeError

            raise NodeError(f"node {self.node_id!r}: out of time (its timeout has passed)", retryable=True)
        return min(wanted, left)

    def data(self) -> dict[str, Any]:
        """The run context that `when`, JMESPath and `{{ }}` templates see."""
        return {
            "payload": self.payload,
            "params": self.params,
            "nodes": self.nodes,
            "incident": self.incident,
            "run": self.run.as_dict(),
        }

    def for_node(self, node_id: str) -> NodeContext:
        """A view of this context for one node (shares outputs and secrets)."""
        return NodeContext(
            run=self.run,
            node_id=node_id,
            payload=self.payload,
            params=self.params,
            http=self.http,
            alert_format=self.alert_format,
            nodes=self.nodes,
            incident=self.incident,
            secrets=self.secrets,
            secret_lookup=self.secret_lookup,
            log=self.log,
            dry_run=self.dry_run,
            attempt=self.attempt,
            max_attempts=self.max_attempts,
            deadline=self.deadline,
            stop=self.stop,
        )
