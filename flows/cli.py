"""The `pipeline` command: a thin shell over flows.definition, flows.render and the flow.

`list`, `describe`, `validate`, `schema` and `run --dry-run` never import Prefect, so
they answer at once. Errors go to stderr as one line (`-v` adds the traceback): exit 2
for usage, validation and not found, 1 for a failed run or an error, 130 after Ctrl-C.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from flows.definition import Pipeline, list_definitions, load_definition
from flows.limits import MAX_PAYLOAD_BYTES, LimitError, check_payload, read_limited
from nodes.errors import DefinitionError

app = typer.Typer(
    help="Run and inspect opsflow pipelines (JSON definitions run as Prefect flows).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_ALERT_PIPELINE = "alert-triage"


class LogLevel(enum.StrEnum):
    """The levels `--log-level` takes (`warn` is logging's WARNING)."""

    debug = "debug"
    info = "info"
    warn = "warn"
    error = "error"


class Exit(Exception):
    """A message for stderr and an exit code: how every user mistake ends."""

    def __init__(self, message: str, code: int = 2):
        super().__init__(message)
        self.code = code


def _ids(value: str | None) -> list[str] | None:
    return [part.strip() for part in value.split(",") if part.strip()] if value else None


def _load(ref: str) -> Pipeline:
    try:
        return load_definition(ref)
    except DefinitionError as exc:
        raise Exit(_definition_message(exc)) from None


def _definition_message(exc: DefinitionError) -> str:
    first = exc.problems[0] if exc.problems else str(exc)
    if len(exc.problems) == 1 and first.startswith(
        ("Pipeline definition not found", "Config file not found", "Invalid JSON")
    ):
        return first
    return "Pipeline definition invalid:\n" + "\n".join(f"  - {p}" for p in exc.problems)


def _payload(payload: str | None, file: Path | None, sample: bool) -> dict[str, Any]:
    if sum(bool(x) for x in (payload, file, sample)) > 1:
        raise Exit("Use only one of --payload, --file and --sample")
    if payload:
        try:
            check_payload(payload, "--payload")
            data = json.loads(payload)
        except LimitError as exc:
            raise Exit(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise Exit(f"Invalid JSON in --payload: {exc.msg} at column {exc.colno}") from None
    elif file:
        try:
            text = read_limited(file, MAX_PAYLOAD_BYTES, "Payload file")
            check_payload(text, f"Payload file {file}")
            data = json.loads(text)
        except LimitError as exc:
            raise Exit(str(exc)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Exit(f"Invalid JSON in payload file {file}: {exc}") from None
    elif sample:
        data = sample_payload()
    else:
        data = {}
    if not isinstance(data, dict):
        raise Exit("The payload must be a JSON object")
    from nodes.scrub import scrub_alert_payload  # the payload is stored as the run's parameters

    return scrub_alert_payload(data)[0]


def sample_payload() -> dict[str, Any]:
    """A realistic Alertmanager webhook: what `--sample` sends."""
    from nodes.ingest.samples import SAMPLE_PAYLOAD

    return json.loads(json.dumps(SAMPLE_PAYLOAD))


@app.command()
def run(
    definition: Annotated[str | None, typer.Option("--definition", "-d", help="Definition name.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Path of a definition file.")] = None,
    payload: Annotated[str | None, typer.Option(help="Alert payload as JSON text.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Alert payload JSON file.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use a sample Alertmanager payload.")] = False,
    source: Annotated[str, typer.Option(help="Where the run came from.")] = "cli",
    environment: Annotated[str, typer.Option(help="Environment name passed to the run.")] = "development",
    trace_id: Annotated[str | None, typer.Option(help="Trace id (default: the flow run id).")] = None,
    only: Annotated[str | None, typer.Option(help="Comma-separated node ids: run only these.")] = None,
    skip: Annotated[str | None, typer.Option(help="Comma-separated node ids to skip.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the plan; run nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the run result as JSON.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Prefect's own log lines.")] = False,
    log_level: Annotated[
        LogLevel | None,
        typer.Option("--log-level", help="Log lines shown while the run goes (default: warnings and up)."),
    ] = None,
    continue_on_error: Annotated[
        bool,
        typer.Option("--continue-on-error", help="Run the other nodes after a failure (status partial)."),
    ] = False,
    env_file: Annotated[
        Path | None,
        typer.Option(
            "--env-file", help="Settings for this run from a dotenv file (wins over the environment)."
        ),
    ] = None,
) -> None:
    """Run a pipeline definition as a Prefect flow run (or show its plan with --dry-run)."""
    if env_file is not None:  # first: the file may set OPSFLOW_DEFINITIONS_DIR or PREFECT_API_URL
        from flows.envfile import load_env_file
        from nodes.errors import OpsflowError

        try:
            names = load_env_file(env_file)
        except OpsflowError as exc:
            raise Exit(str(exc)) from None
        typer.echo(f"Loaded {len(names)} setting(s) from {env_file}: {', '.join(names) or '-'}", err=True)
    if log_level is not None:  # before Prefect is imported, which reads it once
        level = {"warn": "WARNING"}.get(log_level.value, log_level.value.upper())
        os.environ["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = level
        if level == "DEBUG":
            os.environ["PREFECT_LOGGING_LEVEL"] = "DEBUG"
    if definition and config:
        raise Exit("Cannot specify both --definition and --config")
    if not definition and not config:
        if not sample:
            raise Exit("Specify --definition NAME or --config PATH (or --sample for the alert pipeline)")
        definition = DEFAULT_ALERT_PIPELINE
    pipeline = _load(definition or str(config))
    data = _payload(payload, file, sample)
    only_ids, skip_ids = _ids(only), _ids(skip)
    both = [i for i in only_ids or [] if i in (skip_ids or [])]
    if both:
        raise Exit(f"Node id(s) in both --only and --skip: {', '.join(both)}")
    unknown = [i for i in [*(only_ids or []), *(skip_ids or [])] if i not in pipeline.nodes]
    if unknown:
        raise Exit(f"Unknown node id(s): {', '.join(unknown)} (nodes: {', '.join(pipeline.nodes)})")
    if dry_run:
        from flows.render import dry_run_text

        text = dry_run_text(
            pipeline,
            config_path=str(config) if config else None,
            source=source,
            environment=environment,
            payload=data,
            only=only_ids,
            skip=skip_ids,
            previews=_previews(pipeline, data),
        )
        typer.echo(text)
        return
    from flows.runner import run_from_cli

    result = run_from_cli(
        pipeline,
        definition_ref=str(config.resolve()) if config else pipeline.name,
        config_path=str(config) if config else None,
        payload=data,
        source=source,
        environment=environment,
        trace_id=trace_id,
        only=only_ids,
        skip=skip_ids,
        as_json=as_json,
        verbose=verbose or VERBOSE or (log_level is not None and log_level.value == "debug"),
        continue_on_error=continue_on_error,
    )
    if result["status"] == "failed":
        raise Exit(f"Pipeline failed: {result['error']}", code=1)


def _previews(pipeline: Pipeline, payload: dict[str, Any]) -> dict[str, list[dict]]:
    """What each notify node would send, from modules that can say so (nothing is sent)."""
    from nodes import get_node_type
    from nodes.base import NodeContext, RunInfo

    previews: dict[str, list[dict]] = {}
    ctx = NodeContext(
        run=RunInfo(trace_id="dry-run", definition=pipeline.name, definition_dir=pipeline.directory),
        payload=payload,
        dry_run=True,
    )
    for node in pipeline.definition.nodes:
        module = get_node_type(node.type)
        if hasattr(module, "preview"):
            try:
                previews[node.id] = module.preview(node.config, ctx.for_node(node.id))
            except Exception as exc:  # a preview is a courtesy; the plan still prints
                previews[node.id] = [{"error": f"{type(exc).__name__}: {exc}"}]
    return previews


@app.command("list")
def list_command() -> None:
    """List the definitions in the definitions directory."""
    for path in list_definitions():
        try:
            pipeline = load_definition(path)
            typer.echo(f"{pipeline.name:<24} {len(pipeline.nodes):>3} nodes  {pipeline.description}")
        except DefinitionError as exc:
            typer.echo(
                f"{path.stem:<24}   invalid  ({len(exc.problems)} problem(s); see `pipeline validate`)"
            )


@app.command()
def describe(name: Annotated[str, typer.Argument(help="Definition name or path.")]) -> None:
    """Show a definition's nodes, graph and the settings it needs (values never shown)."""
    from flows.render import describe_lines

    typer.echo("\n".join(describe_lines(_load(name))))


@app.command()
def validate(
    targets: Annotated[list[str] | None, typer.Argument(help="Names or paths (default: all).")] = None,
) -> None:
    """Validate definitions; every problem is listed, each naming its node."""
    refs = targets or [str(p) for p in list_definitions()]
    if not refs:
        raise Exit("No definitions found")
    failed = False
    for ref in refs:
        try:
            pipeline = load_definition(ref)
        except DefinitionError as exc:
            failed = True
            typer.echo(f"✗ {ref}", err=True)
            typer.echo(_definition_message(exc), err=True)
            continue
        typer.echo(f"✓ {pipeline.name} ({pipeline.definition_version}, {len(pipeline.nodes)} nodes)")
    if failed:
        raise typer.Exit(2)


@app.command()
def schema() -> None:
    """Print the JSON Schema of definition files."""
    from flows.schema import schema_text

    typer.echo(schema_text(), nl=False)


# `-v` anywhere on the command line: tracebacks for errors, Prefect's own log lines for a run
VERBOSE = False
_VERBOSE_FLAGS = ("-v", "--verbose")


def _unexpected(exc: BaseException) -> tuple[str, int]:
    """One line for an error nobody planned for: the API unreachable, a bug (-v shows it)."""
    import re

    try:
        import httpx
    except ImportError:  # pragma: no cover - httpx is a dependency
        httpx = None
    unreachable = isinstance(exc, RuntimeError) and str(exc).startswith("Failed to reach API")
    if unreachable or (httpx is not None and isinstance(exc, httpx.TransportError)):
        from flows.server import configured_api_url

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
    import flows.cli_ops  # noqa: F401 - registers the commands that talk to Prefect or the store
    from nodes.errors import OpsflowError, UsageError

    global VERBOSE
    verbose = VERBOSE = any(arg in _VERBOSE_FLAGS for arg in sys.argv[1:])
    args = [arg for arg in sys.argv[1:] if arg not in _VERBOSE_FLAGS]
    try:
        # without standalone mode, click returns the code of a typer.Exit instead of raising it
        code = app(args=args, prog_name="pipeline", standalone_mode=False)
    except Exit as exc:
        _say(str(exc), exc, verbose)
        sys.exit(exc.code)
    except DefinitionError as exc:
        _say(_definition_message(exc), exc, verbose)
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
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
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


if __name__ == "__main__":
    os.environ.setdefault("PYTHONIOENCODING", "utf-8")
    # `python -m flows.cli`: the commands of flows.cli_ops register on the imported module's
    # app, not on this __main__ copy, so run the imported one
    from flows.cli import main as imported_main

    imported_main()
