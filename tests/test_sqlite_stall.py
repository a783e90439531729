"""Prefect's server on SQLite froze for its whole busy timeout (issue 15): a cursor that a
"database is locked" left open, freed by the garbage collector on the event loop's thread
while its connection's thread waits for the write lock that loop's own transaction holds.

Real SQLite (WAL, as Prefect sets it up), real aiosqlite threads and SQLAlchemy's aiosqlite
adapter, as in Prefect's server; each scenario in a fresh interpreter, so the patch of
flows.settings.close_sqlite_cursors_on_their_thread stays out of this one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BUSY_MS = 5000  # SQLite's wait for the write lock; Prefect hard-codes 60 s


def _scenario(database: str, fix: bool) -> str:
    """'ok', or the error of the writer that waited while the loop stood still."""
    import asyncio
    import gc

    import aiosqlite
    import sqlalchemy as sa
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.ext.asyncio import create_async_engine

    if fix:
        from flows.settings import close_sqlite_cursors_on_their_thread

        close_sqlite_cursors_on_their_thread()

    async def run() -> str:
        # one pooled connection, so the writer below uses the one whose cursor was left open
        engine = create_async_engine(f"sqlite+aiosqlite:///{database}", pool_size=1, max_overflow=0)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def setup(connection, _record) -> None:  # Prefect's setup_sqlite, in short
            connection.isolation_level = None
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
            cursor.close()

        holder = await aiosqlite.connect(database, isolation_level=None)
        await holder.execute("PRAGMA journal_mode = WAL")
        await holder.execute("CREATE TABLE t (x)")
        async with engine.connect() as connection:  # connected (its PRAGMAs run) before the lock
            await connection.exec_driver_sql("SELECT 1")
        await holder.execute("BEGIN IMMEDIATE")  # another transaction of this loop holds the lock
        async with engine.connect() as connection:
            await connection.exec_driver_sql("PRAGMA busy_timeout = 0")
            try:  # what Prefect answers 503: its cursor stays open, in the exception's cycle
                await connection.exec_driver_sql("INSERT INTO t VALUES (1)")
            except OperationalError:
                pass
            else:
                return "the first insert was not refused"
            await connection.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_MS}")
        waiter_failed: list[str] = []

        async def writer() -> None:  # waits for the lock on that same connection's thread
            try:
                async with engine.begin() as connection:
                    await connection.exec_driver_sql("INSERT INTO t VALUES (2)")
            except OperationalError as exc:
                waiter_failed.append(str(exc.orig))

        waiting = asyncio.create_task(writer())
        await asyncio.sleep(1.0)  # well inside its busy wait
        gc.collect()  # here the cursor is freed (Prefect's loop thread collects the same way)
        await holder.execute("COMMIT")
        await asyncio.wait_for(waiting, timeout=3 * BUSY_MS / 1000)
        await holder.close()
        await engine.dispose()
        return waiter_failed[0] if waiter_failed else "ok"

    gc.disable()  # the one collection is the scenario's own
    return asyncio.run(run())


def _run(tmp_path: Path, fix: bool) -> str:
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from test_sqlite_stall import _scenario; print(_scenario({str(tmp_path / 'db.sqlite')!r}, {fix}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_a_cursor_a_locked_statement_left_open_no_longer_stops_the_servers_loop(tmp_path):
    assert _run(tmp_path, fix=True) == "ok"


def test_without_the_patch_the_waiting_writer_fails_after_the_busy_timeout(tmp_path):
    """The stall itself, so the test above is known to exercise it (and to tell when
    SQLAlchemy, aiosqlite or Python no longer leave it, and the patch can go)."""
    assert _run(tmp_path, fix=False) == "database is locked"


def test_prefect_loads_the_patch_wherever_it_loads_its_collections():
    """`prefect server start` (and the embedded server) load their collections at start."""
    code = (
        "from prefect.plugins import load_prefect_collections; load_prefect_collections(); "
        "import aiosqlite.cursor as c; print(c.Cursor.__del__.__module__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip().splitlines()[-1] == "flows.settings", done.stderr[-2000:]
