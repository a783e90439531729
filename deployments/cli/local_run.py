"""What `pipeline run` and `pipeline runs` do once they need Prefect.

On the embedded default (no PREFECT_API_URL) the local server starts first, in the
background, while Prefect and the flow are imported; it is stopped only after every
task run of the run is recorded, so history survives the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from typing import Any

from flows.definition import Pipeline
from flows.local_server import start_local_server
from flows.progress import listening
from flows.request import RunRequest
from flows.settings import apply_prefect_defaults

RECORD_TIMEOUT = 30.0
# after Ctrl-C: how long the run's last events and logs may take to reach the API
INTERRUPT_FLUSH_TIMEOUT = 2.0


def run_from_cli(
    pipeline: Pipeline,
    request: RunRequest,
    *,
    as_json: bool,
    verbose: bool,
    config_path: str | None = None,
) -> dict[str, Any]:
    """Run the flow in this process and print progress and the result; return the Run result.

    `pipeline` is `request.definition` loaded and validated (by the CLI, before Prefect
    is imported); the flow finds it validated already (flows.definition keeps it).

    Ctrl-C cancels the run (see `_Interrupt`) and raises `flows.progress.Interrupted`.
    """
    apply_prefect_defaults(quiet_console=not verbose)
    server = start_local_server()
    try:
        from deployments.cli.console import RetryWatcher, progress_printer, quiet_engine_lines
        from flows import pipeline as flow_module
        from flows.history import flush_client_queues, wait_for_task_runs
        from flows.render import result_text

        if server is not None:
            server.wait_ready()
        if not verbose:
            quiet_engine_lines()
        # with --json, stdout carries only the result: console notifications go to stderr
        out = sys.stderr if as_json else _ReaderSafe(sys.stdout)
        listener = progress_printer(sys.stderr)
        watcher = RetryWatcher()
        engine_log = logging.getLogger("prefect.task_runs")
        engine_log.addHandler(watcher)
        interrupt = _Interrupt(server, listener)
        try:
            with contextlib.redirect_stdout(out), listening(listener):
                flow_call = flow_module.run_pipeline(**request.parameters(), return_state=True)
                state = asyncio.run(interrupt.run(flow_call))
        finally:
            engine_log.removeHandler(watcher)
            interrupt.restore()
        if interrupt.count:
            interrupt.finish()
        result = state.result(raise_on_failure=False)
        if not isinstance(result, dict):  # the flow itself crashed before producing a result
            raise _flow_error(state, result)
        if result.get("run_id"):
            # a node taken from a past run (`retry --from`) ran there: no task run of this one
            taken = {n for n, r in result.get("node_results", {}).items() if r.get("reused_from")}
            expected = len(set(result["executed_nodes"]) - taken)
            flush_client_queues()
            found = asyncio.run(wait_for_task_runs(result["run_id"], expected, RECORD_TIMEOUT))
            if found < expected:
                print(f"warning: only {found} of {expected} task runs were recorded", file=sys.stderr)
        flush_client_queues()
        nodes = {node.id: node.type for node in pipeline.definition.nodes}
        text = (
            json.dumps(result, indent=2, default=str)
            if as_json
            else result_text(result, config_path=config_path, nodes=nodes, error_on_status_line=False)
        )
        _print_to_reader(text)
        return result
    finally:
        if server is not None:
            server.stop()


def _flow_error(state, result: Any) -> Exception:
    """The error of a flow run that ended before its result: an opsflow error as it is."""
    from nodes.errors import OpsflowError

    if isinstance(result, OpsflowError):
        return result
    detail = f"{type(result).__name__}: {result}" if isinstance(result, BaseException) else state.message
    return OpsflowError(f"Pipeline failed: the flow run ended {state.type.value}: {detail}")


def _print_to_reader(text: str) -> None:
    """Print the result; a reader that stopped early (`| head -3`) is not an error."""
    try:
        print(text, flush=True)
    except BrokenPipeError:
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _ReaderSafe:
    """stdout for the run's console notifications: a reader gone (`| head -3`) fails no node."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.gone = True
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.gone = True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Interrupt:
    """Ctrl-C during a run: the first cancels it, a second exits at once.

    The first stops every node task run of this process (`flows.progress.cancel_in_flight`)
    and cancels the flow, which Prefect records as Crashed; `finish` then marks the run
    Cancelled and raises `Interrupted` (exit 130). One line is printed. The handler stays
    until the process ends, so a second Ctrl-C works at any point of the way out.
    """

    def __init__(self, server, listener) -> None:
        self.server = server
        self.listener = listener
        self.count = 0
        self._main: tuple[asyncio.AbstractEventLoop, asyncio.Task] | None = None
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)

    def restore(self) -> None:
        """A run that ended on its own gives Ctrl-C back to whoever had it."""
        if self._previous is not None and not self.count:
            signal.signal(signal.SIGINT, self._previous)

    async def run(self, flow_call):
        main = asyncio.current_task()  # always a task: asyncio.run wraps the coroutine in one
        self._main = (asyncio.get_running_loop(), main) if main is not None else None
        try:
            return await flow_call
        except asyncio.CancelledError:
            if not self.count:
                raise
            return None
        finally:
            self._main = None

    def _on_sigint(self, *_: Any) -> None:
        from flows.progress import cancel_in_flight

        self.count += 1
        if self.count > 1:
            self._hard_exit()
        if self._main is None:  # not running the flow (yet, or any more): the usual interrupt
            self.count = 0
            raise KeyboardInterrupt
        run_id = getattr(self.listener, "run_id", None)
        what = f"flow run {run_id}" if run_id else "the run"
        print(f"Interrupted: cancelling {what} (Ctrl-C again to quit at once)", file=sys.stderr, flush=True)
        cancel_in_flight()
        loop, main = self._main
        loop.call_soon_threadsafe(main.cancel)

    def _hard_exit(self) -> None:
        """The second Ctrl-C: nothing more is waited for (the local server is killed first)."""
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.process.kill()
        os._exit(130)

    def finish(self) -> None:
        """After the cancelled flow returned: record Cancelled, send what is queued, raise."""
        from flows.history import flush_client_queues
        from flows.progress import Interrupted

        run_id = getattr(self.listener, "run_id", None)
        if run_id:
            with contextlib.suppress(Exception):
                asyncio.run(_mark_cancelled(run_id))
        with contextlib.suppress(Exception):
            flush_client_queues(timeout=INTERRUPT_FLUSH_TIMEOUT)
        raise Interrupted(run_id)


async def _mark_cancelled(run_id: str) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled

    async with get_client() as client:
        await client.set_flow_run_state(UUID(run_id), Cancelled(message="Cancelled with Ctrl-C"), force=True)
