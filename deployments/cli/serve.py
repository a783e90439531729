"""`pipeline serve` (every definition as a deployment, runs executed here) and `pipeline receiver`."""

from __future__ import annotations

import contextlib
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from deployments.cli.common import Exit
from flows.settings import apply_prefect_defaults

if TYPE_CHECKING:
    import asyncio

__all__ = ["receiver_command", "serve", "serve_from_cli"]


_JOURNAL_HELP = (
    "Answer alerts once written to a journal in the incident store's database, and create "
    "their runs as fast as Prefect allows (for alert storms; the 202 then carries a delivery id)."
)

_NO_AUTH_HELP = "Listen off loopback without a receiver token (anyone reaching it can run definitions)."


def _receiver_access(host: str, no_auth: bool) -> None:
    from deployments.receiver.access import check_receiver_access
    from nodes.errors import OpsflowError

    try:
        check_receiver_access(host, no_auth=no_auth)
    except OpsflowError as exc:
        raise Exit(str(exc)) from None


def serve(
    poll: Annotated[float, typer.Option(min=0.1, max=60, help="Seconds between polls for due runs.")] = 0.5,
    limit: Annotated[int, typer.Option(min=1, max=256, help="Flow runs at once.")] = 16,
    receiver: Annotated[bool, typer.Option("--receiver", help="Also run the alert receiver.")] = False,
    host: Annotated[str, typer.Option(help="Receiver address (with --receiver).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Receiver port (with --receiver).")] = 8080,
    journal: Annotated[bool, typer.Option("--journal", help=_JOURNAL_HELP)] = False,
    no_auth: Annotated[bool, typer.Option("--no-auth", help=_NO_AUTH_HELP)] = False,
) -> None:
    """Serve every definition as a deployment (no work pool) and run its flow runs here."""
    if receiver:
        _receiver_access(host, no_auth)

    serve_from_cli(poll=poll, limit=limit, receiver=(host, port, journal) if receiver else None)


def receiver_command(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8080,
    journal: Annotated[bool, typer.Option("--journal", help=_JOURNAL_HELP)] = False,
    no_auth: Annotated[bool, typer.Option("--no-auth", help=_NO_AUTH_HELP)] = False,
) -> None:
    """Run the alert webhook receiver: each alert becomes a flow run of its definition's deployment."""
    _receiver_access(host, no_auth)
    from flows.local_server import configured_api_url
    from flows.settings import apply_prefect_defaults

    apply_prefect_defaults()
    if not configured_api_url():
        raise Exit(
            "The receiver needs a Prefect server: set PREFECT_API_URL (e.g. of `prefect server start`), "
            "or run `pipeline serve --receiver` to serve the deployments and the receiver together"
        )
    if journal:  # a journal that cannot be opened is said here, not in a startup traceback
        from deployments.receiver.journal import Journal
        from nodes.errors import OpsflowError

        try:
            Journal()
        except OpsflowError as exc:
            raise Exit(f"Cannot open the receiver journal: {exc}") from None
    from deployments.receiver.app import main as receiver_main

    receiver_main(host=host, port=port, journal=journal)


def serve_from_cli(*, poll: float, limit: int, receiver: tuple[str, int, bool] | None) -> None:
    """`pipeline serve`: deployments served in this process until Ctrl-C or SIGTERM."""
    import asyncio  # here, with the local server: every other command starts faster without them
    import signal

    from deployments.crashes import crash_automation_wanted, crash_window
    from flows.local_server import start_local_server

    apply_prefect_defaults(quiet_console=False)
    crash_window()  # a mistyped $OPSFLOW_CRASH_AFTER_SECONDS is told now, not while serving
    server = start_local_server()
    try:
        crash_automation = crash_automation_wanted(embedded=server is not None)
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

            await serve(poll_seconds=poll, limit=limit, on_ready=ready, crash_automation=crash_automation)
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
