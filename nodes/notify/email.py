"""`email` driver: SMTP (STARTTLS, implicit TLS or plain), text + HTML, Alertmanager-style subject.

Settings left out of the config come from SMTP_HOST, SMTP_PORT, SMTP_USERNAME,
SMTP_PASSWORD and SMTP_FROM.
"""

from __future__ import annotations

import hashlib
import html
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from nodes.base import REDACTED, NodeContext
from nodes.errors import ConfigError, DeliveryError
from nodes.notify.message import Message, alertmanager_subject, truncate

HTTP = False
_DEFAULT_PORT = {"starttls": 587, "ssl": 465, "none": 25}


class Config(BaseModel):
    """SMTP delivery settings."""

    model_config = ConfigDict(extra="forbid")

    to: list[str] = Field(description="Recipient addresses (a comma-separated string is accepted).")
    host: str | None = Field(default=None, description="SMTP server; default: SMTP_HOST.")
    port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description="SMTP port; default: SMTP_PORT, else 587/465/25 by `security`.",
    )
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls", description="`starttls` (upgrade), `ssl` (implicit TLS, port 465) or `none`."
    )
    username: str | None = Field(
        default=None, description="Login name; default: SMTP_USERNAME (none: no auth)."
    )
    password: SecretStr | None = Field(default=None, description="Login password; default: SMTP_PASSWORD.")
    sender: str | None = Field(
        default=None, description="From address; default: SMTP_FROM, else the username."
    )
    subject: str | None = Field(
        default=None, description="Subject override (default: `[FIRING:2] Name (hosts)`)."
    )
    ca_file: str | None = Field(
        default=None, description="CA bundle to verify the server's certificate with."
    )
    verify_tls: bool = Field(
        default=True, description="Verify the server certificate (turn off only for labs)."
    )
    timeout_seconds: float = Field(
        default=10.0, gt=0, description="Connect and per-command timeout in seconds."
    )

    @field_validator("to", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("to")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one recipient is needed")
        return value


def settings(config: Config, *, strict: bool = True) -> dict[str, Any]:
    """Config merged with the SMTP_* environment; the password is returned in clear for login.

    For a preview (`strict=False`) a host or sender not set reads ***, and the port is not
    checked (a preview does not show it).
    """
    host = config.host or os.environ.get("SMTP_HOST")
    if not host and strict:
        raise ConfigError("email: no host configured and SMTP_HOST is not set")
    port = config.port or os.environ.get("SMTP_PORT") or _DEFAULT_PORT[config.security]
    try:
        port = int(port)
    except ValueError:
        if strict:
            raise ConfigError(f"email: SMTP_PORT is not a number: {port!r}") from None
    username = config.username or os.environ.get("SMTP_USERNAME") or None
    password = config.password.get_secret_value() if config.password else os.environ.get("SMTP_PASSWORD")
    sender = config.sender or os.environ.get("SMTP_FROM") or username
    if not sender and strict:
        raise ConfigError("email: no sender configured and neither SMTP_FROM nor SMTP_USERNAME is set")
    return {
        "host": host or REDACTED,
        "port": port,
        "username": username,
        "password": password,
        "sender": sender or REDACTED,
    }


def build_email(config: Config, message: Message, sender: str):
    """multipart/alternative: text for pagers and filters, HTML for people."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    msg = EmailMessage()
    msg["Subject"] = (config.subject or alertmanager_subject(message)).replace("\n", " ")
    msg["From"] = sender
    msg["To"] = ", ".join(config.to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain="opsflow")
    key = (message.incident or {}).get("key")
    if key:  # firing and resolved mails of one incident share a thread in mail clients
        thread = f"<incident-{hashlib.sha256(str(key).encode()).hexdigest()[:24]}@opsflow>"
        msg["References"] = thread
        msg["In-Reply-To"] = thread
    msg["X-Opsflow-Trace-Id"] = str(message.run.get("trace_id", ""))
    text = truncate(message.text, 100_000)
    facts = "\n".join(f"{k}: {v}" for k, v in message.fields.items())
    msg.set_content(f"{message.title}\n\n{text}\n\n{facts}")
    msg.add_alternative(_html(message, text), subtype="html")
    return msg


def _html(message: Message, text: str) -> str:
    esc = html.escape
    parts = [f"<h2>{esc(message.title)}</h2>", f"<p><b>Severity:</b> {esc(message.severity_line)}</p>"]
    parts.append("<pre style='white-space:pre-wrap'>" + esc(text) + "</pre>")
    if message.links:
        items = "".join(f"<li><a href='{esc(x['url'])}'>{esc(x['title'])}</a></li>" for x in message.links)
        parts.append(f"<ul>{items}</ul>")
    rows = "".join(
        f"<tr><th align='left'>{esc(k)}</th><td>{esc(str(v))}</td></tr>" for k, v in message.fields.items()
    )
    parts.append(f"<table>{rows}</table>")
    return "<html><body>" + "".join(parts) + "</body></html>"


def preview(config: Config, message: Message) -> dict[str, Any]:
    """The mail `send` would send, from the same settings; a host or sender not set reads ***."""
    s = settings(config, strict=False)
    msg = build_email(config, message, s["sender"])
    return {
        "driver": "email",
        "method": "SMTP",
        "url": f"smtp://{s['host']}",
        "body": {
            "from": s["sender"],
            "to": config.to,
            "subject": msg["Subject"],
            "text": msg.get_body(("plain",)).get_content(),
        },
    }


def send(config: Config, message: Message, ctx: NodeContext, client: Any = None) -> dict[str, Any]:
    """Send one mail; SMTP 4xx and network trouble are retryable, 5xx and bad login are not."""
    import smtplib
    import ssl

    s = settings(config)
    if s["password"]:
        ctx.secrets.add(s["password"])
    where = f"email {s['host']}:{s['port']}"
    tls = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify_tls:
        tls.check_hostname = False
        tls.verify_mode = ssl.CERT_NONE
    msg = build_email(config, message, s["sender"])
    timeout = ctx.time_left(config.timeout_seconds)
    smtp: smtplib.SMTP  # or its subclass SMTP_SSL
    try:
        if config.security == "ssl":
            smtp = smtplib.SMTP_SSL(s["host"], s["port"], timeout=timeout, context=tls)
        else:
            smtp = smtplib.SMTP(s["host"], s["port"], timeout=timeout)
        with smtp:
            if config.security == "starttls":
                smtp.starttls(context=tls)
            if s["username"]:
                smtp.login(s["username"], s["password"] or "")
            ctx.time_left(timeout)  # a slow greeting or login may have used the attempt up
            refused = smtp.send_message(msg)
    except smtplib.SMTPAuthenticationError as exc:
        raise DeliveryError(f"{where}: login refused for {s['username']!r} ({exc.smtp_code})") from exc
    except smtplib.SMTPRecipientsRefused as exc:
        codes = {addr: code for addr, (code, _) in exc.recipients.items()}
        retry = all(400 <= c < 500 for c in codes.values())
        raise DeliveryError(f"{where}: every recipient refused: {codes}", retryable=retry) from exc
    except smtplib.SMTPResponseException as exc:
        reply = exc.smtp_error
        reply = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
        raise DeliveryError(
            f"{where}: server answered {exc.smtp_code} {truncate(str(reply), 200)}",
            retryable=400 <= exc.smtp_code < 500,
        ) from exc
    except smtplib.SMTPNotSupportedError as exc:
        raise DeliveryError(f"{where}: server does not support {config.security.upper()}: {exc}") from exc
    except ssl.SSLCertVerificationError as exc:
        raise DeliveryError(f"{where}: TLS certificate not trusted: {exc.verify_message}") from exc
    except smtplib.SMTPServerDisconnected as exc:
        # smtplib reports a read timeout (a server that never greets or replies) as a disconnect
        if not isinstance(exc.__context__, TimeoutError):
            raise DeliveryError(f"{where}: connection closed by the server: {exc}", retryable=True) from exc
        raise DeliveryError(f"{where}: no answer within {timeout:g}s", retryable=True) from exc
    except TimeoutError as exc:
        raise DeliveryError(f"{where}: no answer within {timeout:g}s", retryable=True) from exc
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"{where}: {type(exc).__name__}: {exc}", retryable=True) from exc
    record: dict[str, Any] = {
        "driver": "email",
        "status": "delivered",
        "http_status": None,
        "message_id": msg["Message-ID"],
        "error": None,
        "target": where.removeprefix("email "),
        "recipients": len(config.to) - len(refused),
    }
    if refused:
        record["refused"] = sorted(refused)
        ctx.log.warning("email: %d recipient(s) refused: %s", len(refused), sorted(refused))
    return record
