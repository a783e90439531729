"""What a flow run in this process tells the CLI as it goes, and how the CLI stops it.

Progress listeners get one dict per event: a run started, a node finished, or a node
is waiting (a retry delay, an approval). A caller listens for the runs it starts
(`with listening(listener): ...`): the listener lives in a context variable, which the
flow and its task-run threads inherit from the caller, so two runs in one process never
hear each other. `cancel_in_flight` is Ctrl-C's way in: it
stops node work and the retry waits of every task run of this process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import weakref
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["CANCELLED", "Interrupted", "cancel_in_flight", "emit", "listening", "watch_loop"]

Listener = Callable[[dict[str, Any]], None]

# who listens to the runs started in this context (the CLI's progress lines)
_LISTENERS: contextvars.ContextVar[tuple[Listener, ...]] = contextvars.ContextVar(
    "opsflow_progress", default=()
)

# set once the CLI was interrupted: node tasks that start after it end at once
CANCELLED = threading.Event()

# the event loops of this process's node task runs (one per task run, in its worker thread)
_LOOPS: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
_LOOPS_LOCK = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """Ctrl-C ended the run; it was cancelled in Prefect and the terminal was already told."""

    announced = True

    def __init__(self, run_id: str | None = None) -> None:
        super().__init__(run_id)
        self.run_id = run_id


@contextlib.contextmanager
def listening(listener: Listener) -> Iterator[None]:
    """Call `listener` with the progress events of the runs started inside this block."""
    token = _LISTENERS.set((*_LISTENERS.get(), listener))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def emit(event: dict[str, Any]) -> None:
    """Tell every listener of this context; a listener that fails never fails the run."""
    for listener in _LISTENERS.get():
        with contextlib.suppress(Exception):
            listener(event)


def watch_loop() -> None:
    """Register the running loop (a task run's) so `cancel_in_flight` can reach it."""
    with _LOOPS_LOCK:
        _LOOPS.add(asyncio.get_running_loop())


def cancel_in_flight() -> None:
    """Cancel every task of every registered task-run loop: node work, retry delays, all.

    Node handlers run in threads of their own that are abandoned (daemon threads); the
    task runs end Crashed in Prefect at once instead of retrying on.
    """
    CANCELLED.set()
    with _LOOPS_LOCK:
        loops = list(_LOOPS)
    for loop in loops:
        with contextlib.suppress(RuntimeError):  # closed meanwhile: nothing left to stop
            loop.call_soon_threadsafe(_cancel_all, loop)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    for task in asyncio.all_tasks(loop):
        task.cancel()
