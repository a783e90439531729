"""Prefect settings opsflow needs by default, applied before Prefect is imported.

Only defaults: a value the user set in the environment always wins.
"""

from __future__ import annotations

import os

DEFAULTS = {
    # opsflow runs offline; the telemetry heartbeat only fails and logs noise
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # a fresh PREFECT_HOME runs every database migration on the first start (~30 s here)
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # write each task-run event at once, so history is complete when a run ends
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1",
    # a heartbeat every 30 s (Prefect's minimum) lets a dead run be marked Crashed (deployments.crashes)
    "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "30",
}


def apply_prefect_defaults(quiet_console: bool = False) -> None:
    """Set opsflow's Prefect defaults; `quiet_console` keeps Prefect's INFO lines off the terminal."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    if quiet_console:
        os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")


def close_sqlite_cursors_on_their_thread() -> None:
    """Stop Prefect's server on SQLite from freezing for its 60 s busy timeout (issue 15).

    For a server process (Prefect's own `prefect server start`, or flows.local_server);
    idempotent, and nothing without aiosqlite. When a statement fails (a "database is
    locked" answered as 503, an IntegrityError), SQLAlchemy's aiosqlite adapter leaves its
    cursor open inside the exception's reference cycle; Python's garbage collector then
    frees it on the event loop's thread, and freeing a cursor resets its statement, which
    waits for the connection's mutex. When that connection's own thread is meanwhile
    waiting for SQLite's write lock, the loop waits with it; the lock's holder is a
    transaction of the same server, which can only commit when the loop runs again, so
    all stand still until the busy timeout Prefect hard-codes (60 s) gives up. Handing
    the cursor to its connection's thread to close (a queue that thread works through,
    safe to fill from a finalizer) frees it there, after whatever that thread is doing.
    """
    try:
        from aiosqlite.cursor import Cursor
    except ImportError:
        return
    if getattr(Cursor, "__del__", None) is not _close_on_own_thread:
        Cursor.__del__ = _close_on_own_thread  # type: ignore[attr-defined]


def _close_on_own_thread(cursor) -> None:
    """aiosqlite.Cursor's finalizer: its sqlite3 cursor is closed, and freed, by its connection's thread."""
    connection = getattr(cursor, "_conn", None)
    inner = getattr(cursor, "_cursor", None)
    if connection is None or inner is None or not getattr(connection, "_running", False):
        return  # its thread has been told to stop and may be gone: nothing would close it there
    try:
        connection._tx.put_nowait((None, inner.close))
    except Exception:  # a finalizer must not raise (at interpreter shutdown)
        pass


def plain_http_loopback(url: str | None) -> bool:
    """True for an API reached over plain http on this machine, where TLS is never used."""
    from urllib.parse import urlsplit

    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def skip_tls_setup_for(url: str | None) -> None:
    """Spare every Prefect API client the CA bundle it loads, when the API is plain http on loopback.

    Prefect builds an SSL context for each client, http or not, parsing a whole CA
    bundle each time: ~50 ms, paid by every task run (~150 ms per node here). Over
    plain http no certificate is ever checked, so pointing it at a one-certificate
    file changes nothing but the time.
    """
    if plain_http_loopback(url) and "PREFECT_API_SSL_CERT_FILE" not in os.environ:
        path = _one_certificate_file()
        if path is not None:
            os.environ["PREFECT_API_SSL_CERT_FILE"] = str(path)


def _one_certificate_file():
    """The first certificate of certifi's bundle, in a file of its own (made once per machine)."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.gettempdir()) / "opsflow-http-only-ca.pem"
    if path.is_file():
        return path
    try:
        import certifi

        bundle = Path(certifi.where()).read_text()
        end = bundle.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
        first = bundle[bundle.index("-----BEGIN CERTIFICATE-----") : end] + "\n"
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(first)
        partial.replace(path)
    except (ImportError, OSError, ValueError):
        return None
    return path
