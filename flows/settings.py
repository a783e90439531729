"""Prefect settings opsflow needs by default, applied before Prefect is imported.

Only defaults: a value the user set in the environment always wins.
"""

from __future__ import annotations

import functools
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


def share_api_tls_contexts() -> None:
    """Give every Prefect API client of this process one TLS context per setting, built once.

    Prefect 3.8.8 builds a fresh SSL context in each PrefectClient and SyncPrefectClient,
    parsing its whole CA bundle every time (~20 ms of CPU here), http API or not; an async
    task run opens two clients, so a node paid ~40 ms for it (bench/core.py's per-node
    figure: 47 ms for a bare task as shipped, 13 ms for an opsflow node with this). The
    context is the one Prefect would build, from the same settings
    (PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_SSL_CERT_FILE, else certifi's
    bundle), and is shared, as one passed in `httpx_settings` would be: an SSLContext is
    made for that. Idempotent; a client given its own `verify` keeps it.
    """
    from prefect.client import orchestration

    for client_class in (orchestration.PrefectClient, orchestration.SyncPrefectClient):
        if getattr(client_class.__init__, "shares_tls_context", False):
            continue
        client_class.__init__ = _with_shared_tls_context(client_class.__init__)  # type: ignore[method-assign]


def _with_shared_tls_context(init):
    @functools.wraps(init)
    def __init__(self, api, *args, httpx_settings=None, **kwargs):
        settings = dict(httpx_settings or {})
        if "verify" not in settings:  # where Prefect would build a context of its own
            settings["verify"] = _api_tls_context(*_api_tls_settings())
        init(self, api, *args, httpx_settings=settings, **kwargs)

    __init__.shares_tls_context = True  # type: ignore[attr-defined]
    return __init__


def _api_tls_settings() -> tuple[bool, str]:
    import certifi
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY

    insecure = bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value())
    return insecure, "" if insecure else (PREFECT_API_SSL_CERT_FILE.value() or certifi.where())


@functools.lru_cache(maxsize=8)
def _api_tls_context(insecure: bool, cert_file: str):
    """The SSL context Prefect's clients build for these settings (prefect.client.orchestration)."""
    import ssl

    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=cert_file)
