"""The `pipeline` command: a thin shell over flows.definition, flows.render and the flow.

`list`, `describe`, `validate`, `schema` and `run --dry-run` never import Prefect, so
they answer at once. Errors go to stderr as one line (`-v` adds the traceback): exit 2
for usage, validation and not found, 1 for a failed run or an error, 130 after Ctrl-C.
"""

from __future__ import annotations

import os
import sys

import typer

from deployments.cli import definitions, deployments_yaml, doctor, operate, retry, run, serve
from deployments.cli.common import VERBOSE_FLAGS, Exit, definition_message, verbose_requested
from nodes.errors import DefinitionError

app = typer.Typer(
    help="Run and inspect opsflow pipelines (JSON definitions run as Prefect flows).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# every command, in the order `pipeline --help` lists them
app.command()(run.run)
app.command("run-stage")(run.run_stage_command)
app.command("list")(definitions.list_command)
app.command()(definitions.describe)
app.command()(definitions.validate)
app.command()(definitions.schema)
app.command()(operate.runs)
app.command()(operate.show)
app.command()(operate.logs)
app.command()(retry.retry)
app.command()(serve.serve)
app.command("receiver")(serve.receiver_command)
app.command()(deployments_yaml.deployments)
app.command()(operate.publish)
app.command()(operate.pull)
app.command()(operate.approve)
app.command()(operate.incidents)
app.command("doctor")(doctor.doctor_command)


def _unexpected(exc: BaseException) -> tuple[str, int]:
    """One line for an error nobody planned for: the API unreachable, a bug (-v shows it)."""
    import re

    transport_errors: tuple[type[BaseException], ...] = ()
    try:
        import httpx

        transport_errors = (httpx.TransportError,)
    except ImportError:  # pragma: no cover - httpx is a dependency
        pass
    unreachable = isinstance(exc, RuntimeError) and str(exc).startswith("Failed to reach API")
    if unreachable or isinstance(exc, transport_errors):
        from flows.local_server import configured_api_url

        url = re.sub(r"//[^/@]*@", "//", configured_api_url() or "")  # no credentials in messages
        why = "" if unreachable else f": {exc or type(exc).__name__}"
        return f"Cannot reach the Prefect API at {url}{why}", 1
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"Error: {type(exc).__name__}{': ' + text if text else ''} (run with -v for the traceback)", 1


def main() -> None:
    """Console entry point: run the app, turning every error into one line on stderr.

    Exit codes: 2 usage, validation or not found; 1 a failed run or an error; 130 Ctrl-C.
    `-v` adds the traceback.
    """
    from nodes.errors import OpsflowError, UsageError

    verbose = verbose_requested()
    args = [arg for arg in sys.argv[1:] if arg not in VERBOSE_FLAGS]
    try:
        # without standalone mode, click returns the code of a typer.Exit instead of raising it
        code = app(args=args, prog_name="pipeline", standalone_mode=False)
    except Exit as exc:
        _say(str(exc), exc, verbose)
        sys.exit(exc.code)
    except DefinitionError as exc:
        _say(definition_message(exc), exc, verbose)
        sys.exit(2)
    except OpsflowError as exc:
        _say(str(exc), exc, verbose)
        sys.exit(2 if isinstance(exc, UsageError) else 1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt) as exc:
        if not getattr(exc, "announced", False):  # a cancelled run has said so already
            _say("Interrupted.", None, False)
        sys.exit(130)
    except BrokenPipeError:
        _quiet_broken_pipe()
    except Exception as exc:
        # usage errors of typer's bundled click (its classes are private): show, no traceback
        show, exit_code = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            sys.exit(exit_code)
        message, status = _unexpected(exc)
        _say(message, exc, verbose)
        sys.exit(status)
    sys.exit(code if isinstance(code, int) else 0)


def _say(message: str, exc: BaseException | None, verbose: bool) -> None:
    if verbose and exc is not None:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    try:
        typer.echo(message, err=True)
    except BrokenPipeError:
        pass


def _quiet_broken_pipe() -> None:
    """The reader went away (`pipeline run | head -3`): exit without Python's complaint."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    sys.exit(0)  # the reader chose to stop reading: not a failure of this command
