"""Who may call the receiver: its bearer token, and no unauthenticated listening off loopback.

Without a token every definition can be run by anyone who reaches the port, so the
receiver listens on a non-loopback address only with a token, or when told `--no-auth`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from nodes.errors import OpsflowError

__all__ = ["TOKEN_ENV", "TOKEN_FILE_ENV", "check_receiver_access", "is_loopback", "receiver_token"]

TOKEN_ENV = "OPSFLOW_RECEIVER_TOKEN"
# a file holding the token (container secrets: /run/secrets/...), read at start
TOKEN_FILE_ENV = "OPSFLOW_RECEIVER_TOKEN_FILE"

log = logging.getLogger("opsflow.receiver")


def receiver_token() -> str | None:
    """The token the receiver requires, from $OPSFLOW_RECEIVER_TOKEN or the file that
    $OPSFLOW_RECEIVER_TOKEN_FILE names (surrounding whitespace and the final newline dropped).

    A file that is named but missing, unreadable or empty is an error, never "no token":
    a receiver meant to be guarded must not start open. Both set is an error too.
    """
    value = os.environ.get(TOKEN_ENV) or None
    path = os.environ.get(TOKEN_FILE_ENV) or None
    if path is None:
        return value
    if value is not None:
        raise OpsflowError(f"Set only one of {TOKEN_ENV} and {TOKEN_FILE_ENV}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OpsflowError(f"{TOKEN_FILE_ENV}: no such file: {path}") from None
    except IsADirectoryError:
        raise OpsflowError(f"{TOKEN_FILE_ENV}: {path} is a directory, not a token file") from None
    except PermissionError:
        raise OpsflowError(f"{TOKEN_FILE_ENV}: {path} cannot be read (permission denied)") from None
    except UnicodeDecodeError:
        raise OpsflowError(f"{TOKEN_FILE_ENV}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise OpsflowError(f"{TOKEN_FILE_ENV}: {path} cannot be read ({exc.strerror or exc})") from None
    token = text.strip()
    if not token:
        raise OpsflowError(f"{TOKEN_FILE_ENV}: {path} is empty")
    return token


def is_loopback(host: str) -> bool:
    """Whether `host` only listens to this machine: `localhost`, 127.0.0.0/8 or ::1.

    Any other name counts as reachable from the network (it may resolve anywhere), and
    so does the empty host (all interfaces).
    """
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_receiver_access(host: str, *, no_auth: bool) -> None:
    """Refuse to serve the receiver on a non-loopback `host` without a token, unless `no_auth`
    (then a warning is logged). Raises OpsflowError with the line to show; a bad token file too.
    """
    if receiver_token() is not None or is_loopback(host):
        return
    if not no_auth:
        raise OpsflowError(
            f"Refusing to run the receiver on {host or 'all interfaces'} without a token: "
            f"set {TOKEN_ENV} (or {TOKEN_FILE_ENV}), or pass --no-auth to accept "
            "unauthenticated requests from the network"
        )
    _warn(
        f"the receiver on {host or 'all interfaces'} accepts requests without a token (--no-auth): "
        "anyone who can reach it can run every definition"
    )


def _warn(message: str) -> None:
    """Log `message` as a warning, in the receiver's log format when logging is not set up yet
    (this runs before the receiver configures it, and must not configure it for the process)."""
    if log.hasHandlers():
        log.warning(message)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    log.addHandler(handler)
    try:
        log.warning(message)
    finally:
        log.removeHandler(handler)
