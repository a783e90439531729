"""What `pipeline run` and `pipeline runs` do once they need Prefect.

On the embedded default (no PREFECT_API_URL) the local server starts first, in the
background, while Prefect and the flow are imported; it is stopped only after every
task run of the run is recorded, so history survives the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from flows.definition import Pipeline
from flows.server import start_local_server
from flows.settings import apply_prefect_defaults

RECORD_TIMEOUT = 30.0


def _progress_printer(stream):
    def show(event: dict[str, Any]) -> None:
        head = f"▶ [{event['index']}/{event['total']}] {event['node_type']} {event['node_id']} …"
        if event["state"] == "skipped":
            tail = f"skipped ({event['skip_reason']})"
        elif event["state"] == "failed":
            tail = f"FAILED in {event['duration_ms']:.0f} ms: {event['error']}"
        else:
            tail = f"done in {event['duration_ms']:.0f} ms"
        print(f"{head} {tail}", file=stream, flush=True)

    return show


def run_from_cli(
    pipeline: Pipeline,
    *,
    definition_ref: str | dict[str, Any],
    payload: dict[str, Any],
    source: str,
    environment: str,
    trace_id: str | None,
    only: list[str] | None,
    skip: list[str] | None,
    as_json: bool,
    verbose: bool,
    continue_on_error: bool = False,
) -> dict[str, Any]:
    """Run the flow in this process and print progress and the result; return the Run result."""
    apply_prefect_defaults(quiet_console=not verbose)
    server = start_local_server()
    try:
        from flows import pipeline as flow_module
        from flows.history import flush_client_queues, wait_for_task_runs
        from flows.render import result_text

        if server is not None:
            server.wait_ready()
        # with --json, stdout carries only the result: console notifications go to stderr
        out = sys.stderr if as_json else sys.stdout
        listener = _progress_printer(sys.stderr)
        flow_module.PROGRESS.append(listener)
        try:
            with contextlib.redirect_stdout(out):
                state = asyncio.run(
                    flow_module.run_pipeline(
                        definition=definition_ref,
                        payload=payload,
                        source=source,
                        environment=environment,
                        trace_id=trace_id,
                        only=only,
                        skip=skip,
                        continue_on_error=continue_on_error,
                        return_state=True,
                    )
                )
        finally:
            flow_module.PROGRESS.remove(listener)
        result = state.result(raise_on_failure=False)
        if not isinstance(result, dict):  # the flow itself crashed before producing a result
            raise RuntimeError(f"the flow run ended {state.type.value}: {state.message}")
        if result.get("run_id"):
            expected = len(result["executed_nodes"])
            flush_client_queues()
            found = asyncio.run(wait_for_task_runs(result["run_id"], expected, RECORD_TIMEOUT))
            if found < expected:
                print(f"warning: only {found} of {expected} task runs were recorded", file=sys.stderr)
        flush_client_queues()
        if as_json:
            print(json.dumps(result, indent=2, default=str))
        else:
            print(result_text(result))
        return result
    finally:
        if server is not None:
            server.stop()


def with_api(call):
    """Call `call()` with a Prefect API: the configured one, or the local server for its duration."""
    apply_prefect_defaults(quiet_console=True)
    server = start_local_server()
    try:
        if server is not None:
            server.wait_ready()
        return call()
    finally:
        if server is not None:
            server.stop()


def list_runs(definition: str | None, limit: int) -> list[dict[str, Any]]:
    from flows.history import recent_runs

    return with_api(lambda: asyncio.run(recent_runs(definition, limit)))


def serve_from_cli(*, poll: float, limit: int, receiver: tuple[str, int, bool] | None) -> None:
    """`pipeline serve`: deployments served in this process until Ctrl-C or SIGTERM."""
    import signal

    apply_prefect_defaults(quiet_console=False)
    server = start_local_server()
    try:
        if server is not None:
            server.wait_ready()
            print(f"Prefect API (local, stops with this command): {server.api_url}", file=sys.stderr)
        from deployments.serve import serve

        async def main() -> None:
            tasks: list[asyncio.Task] = []

            def ready(registered, pipeline_server) -> None:
                names = ", ".join(f"run-pipeline/{name}" for name in registered.values())
                print(f"Serving {len(registered)} deployment(s): {names}", file=sys.stderr, flush=True)
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.add_signal_handler(sig, pipeline_server.stopping.set)
                if receiver is not None:
                    from deployments.serve import run_receiver

                    tasks.append(asyncio.create_task(run_receiver(*receiver, pipeline_server.stopping)))
                    print(
                        f"Alert receiver on http://{receiver[0]}:{receiver[1]}", file=sys.stderr, flush=True
                    )

            await serve(poll_seconds=poll, limit=limit, on_ready=ready)
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run(main())
        flush_client_queues_quietly()
    finally:
        if server is not None:
            server.stop()


def flush_client_queues_quietly() -> None:
    from flows.history import flush_client_queues

    with contextlib.suppress(Exception):
        flush_client_queues()
