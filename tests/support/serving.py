"""Definitions served in this process as `pipeline serve` serves them, for tests on the session server.

`served_in_process(names)` registers the deployments, runs a PipelineServer on its own event
loop in a thread, and stops it (and closes the loop) on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from uuid import UUID


@contextlib.contextmanager
def served_in_process(names: list[str], poll_seconds: float = 0.2) -> Iterator[dict[UUID, str]]:
    """The registered deployments (id → definition name), served until the block ends."""
    from deployments.serve import PipelineServer, register_deployments

    loop = asyncio.new_event_loop()
    registered = loop.run_until_complete(register_deployments(names))
    server = PipelineServer(list(registered), poll_seconds=poll_seconds)
    thread = threading.Thread(target=loop.run_until_complete, args=(server.run(),), daemon=True)
    thread.start()
    try:
        yield registered
    finally:
        loop.call_soon_threadsafe(server.stopping.set)
        thread.join(timeout=60)
        if not thread.is_alive():
            loop.close()
