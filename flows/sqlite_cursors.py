"""Loaded by Prefect wherever it loads its collections (its server among them, through opsflow's
`prefect.collections` entry point): applies flows.settings.close_sqlite_cursors_on_their_thread,
so a Prefect server on SQLite does not freeze for its 60 s busy timeout (issue 15)."""

from flows.settings import close_sqlite_cursors_on_their_thread

close_sqlite_cursors_on_their_thread()
