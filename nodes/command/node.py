"""`command` node: run a program (a script stage) and check what it leaves behind.

The output has the exit code, the last 64 KiB of stdout and stderr (redacted), the duration,
the CPU seconds and peak RSS of the program's process tree, each declared artifact (path,
bytes, sha256, valid) and, with `output: "json"`, stdout parsed as `parsed`. Output lines go
to the task run's log as they come. The executable is always written in the definition:
templates may fill arguments, never `command[0]`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import threading
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nodes.base import NodeContext, is_secret_setting
from nodes.command.artifacts import check_artifact, check_schema, load_schema
from nodes.command.failures import output_text, stage_failed, stage_stopped, usage
from nodes.command.process import Outcome, run_process
from nodes.errors import ConfigError, NodeError
from nodes.templating import has_dynamic, mask_references, resolve

__all__ = ["Artifact", "Config", "executable_problem", "preview", "resolve_config", "run"]

MAX_JSON_STDOUT_BYTES = 16 * 1024 * 1024
MAX_LOGGED_LINES = 1000
_PYTHON_NAMES = ("python", "python3")
_COMMAND0 = (
    "command[0] must be written out, not a {{ }} template or ${...} reference: the executable "
    "never comes from the payload or the environment (templates may fill the other arguments)"
)
_SHELL_TEMPLATE = (
    "shell: a shell string takes no {{ }} templates (the shell would parse payload text); "
    "use `command` (an argv list) for templated arguments, or pass values through `env`"
)


class Artifact(BaseModel):
    """A file the program must leave behind, checked once it exited successfully."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="The file, relative to the command's `cwd`.")
    schema_: str | dict[str, Any] | bool | None = Field(
        default=None,
        alias="schema",
        description="JSON Schema the file must satisfy (it must then be JSON): a path relative to the "
        "definition's directory, or the schema itself (an object, or true/false). "
        "Absent: the file only has to exist.",
    )
    optional: bool = Field(
        default=False, description="A missing file is no failure (a present one is checked)."
    )

    @field_validator("path")
    @classmethod
    def _written_path(cls, value: str) -> str:
        if has_dynamic(value):  # a payload must not choose which file is read (and echoed)
            raise ValueError("an artifact's path is written out, not a {{ }} template or ${...} reference")
        return value

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and has_dynamic(value):
            raise ValueError("an artifact's schema is written out, not a {{ }} template or ${...} reference")
        if isinstance(value, dict | bool):
            check_schema(value)
        elif isinstance(value, str):
            base = (info.context or {}).get("definition_dir")
            if base:  # known at load time when the definition names its directory
                load_schema(value, Path(base))
        return value


class Config(BaseModel):
    """What to run (`command` or `shell`), where, with what environment, and what must result."""

    model_config = ConfigDict(extra="forbid")

    command: list[str] | None = Field(
        default=None,
        min_length=1,
        description="The program and its arguments (no shell). Arguments may be `{{ }}` templates, "
        "each rendered to exactly one argument; `command[0]` is written out. `python3` (or `python`) "
        "is opsflow's own interpreter unless given as an absolute path.",
    )
    shell: str | None = Field(
        default=None,
        min_length=1,
        description="Instead of `command`: a script run by /bin/sh -c, passed as written (`$VAR` is "
        "the shell's, over the environment below); no `{{ }}` templates.",
    )
    cwd: str | None = Field(
        default=None, description="Working directory, relative to the definition's directory (default: it)."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Variables set over the process environment; `${NAME}` values resolve as everywhere. "
        "Values are never logged.",
    )
    artifacts: list[Artifact] = Field(
        default_factory=list, description="Files checked after a successful exit (exists, JSON Schema)."
    )
    success_codes: list[int] = Field(default=[0], min_length=1, description="Exit codes that mean success.")
    retry_on_exit_codes: list[int] | None = Field(
        default=None,
        description="Failing exit codes worth a retry (default: every failing code is retryable).",
    )
    output: Literal["text", "json"] = Field(
        default="text", description="`json`: stdout must be JSON, parsed into the output's `parsed`."
    )
    kill_grace_seconds: float = Field(
        default=5.0, ge=0, le=300, description="Between SIGTERM and SIGKILL when the program is stopped."
    )

    @field_validator("command")
    @classmethod
    def _literal_program(cls, value: list[str] | None) -> list[str] | None:
        if value and has_dynamic(value[0]):
            raise ValueError(_COMMAND0)
        if value and not value[0]:
            raise ValueError("command[0] is empty: name the program to run")
        return value

    @field_validator("env")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not name or "=" in name or "\x00" in name:
                raise ValueError(f"{name[:60]!r} is not an environment variable name")
        return value

    # env values typed in that are credentials (by name or shape), as SecretStr: whatever shows a
    # definition masks them as it masks every key typed into one (describe, dry-run, publish)
    _typed_secrets: list[SecretStr] = PrivateAttr(default_factory=list)

    @model_validator(mode="after")
    def _one_program(self) -> Config:
        if (self.command is None) == (self.shell is None):
            raise ValueError("give exactly one of `command` (an argv list) or `shell` (a string)")
        if self.shell is not None and ("{{" in self.shell or "{%" in self.shell):
            raise ValueError(_SHELL_TEMPLATE)
        self._typed_secrets = [
            SecretStr(value)
            for name, value in self.env.items()
            if not has_dynamic(value) and is_secret_setting(name, value)
        ]
        return self


def resolve_config(raw: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
    """Resolve templates and references, except in what must stay as written: `command[0]` (a
    template there is refused before anything renders), the shell string and the artifacts."""
    command = raw.get("command")
    if isinstance(command, list) and command and isinstance(command[0], str) and has_dynamic(command[0]):
        raise ConfigError(f"config.{_COMMAND0}")
    resolved = resolve({k: v for k, v in raw.items() if k not in ("shell", "artifacts")}, ctx)
    if "shell" in raw:
        resolved["shell"] = raw["shell"]
    if "artifacts" in raw:  # as written: a payload never chooses which file is read and echoed
        resolved["artifacts"] = raw["artifacts"]
    return resolved


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    base = Path(ctx.run.definition_dir or os.getcwd())
    shown, argv = _argv(config)
    cwd = _cwd(config, base)
    if ctx.dry_run:
        return {"dry_run": True, "argv": shown, "cwd": str(cwd), "env": sorted(config.env)}
    for name, value in config.env.items():
        if is_secret_setting(name, value):
            ctx.secrets.add(value)
    schemas = [_schema(artifact, i, base) for i, artifact in enumerate(config.artifacts)]
    ctx.time_left(1.0)  # no time left: the usual out-of-time error, and nothing started
    lines = _LineLog(ctx)
    try:
        outcome = run_process(
            argv,
            cwd=str(cwd),
            env=_environment(config),
            on_line=lines,
            deadline=ctx.deadline,
            stop=ctx.stop,
            grace=config.kill_grace_seconds,
            keep_stdout=MAX_JSON_STDOUT_BYTES if config.output == "json" else None,
        )
    except FileNotFoundError:
        raise ConfigError(
            f"config.command[0]: program {shown[0]!r} not found (in {cwd} or on PATH)"
        ) from None
    except PermissionError:
        raise ConfigError(f"config.command[0]: {shown[0]!r} is not executable") from None
    except ValueError as exc:  # a NUL in an argument or an env value (the value is not shown)
        raise ConfigError(f"config: cannot start the program: {exc}") from None
    finally:
        lines.close()
    if outcome.leftovers:
        ctx.log.warning("%d process(es) the program left running were stopped", outcome.leftovers)
    if outcome.ended != "exited":
        raise stage_stopped(outcome, ctx)
    code = outcome.exit_code
    if code not in config.success_codes:
        raise stage_failed(code, outcome, config.retry_on_exit_codes, ctx)
    out: dict[str, Any] = {
        "argv": shown,
        "cwd": str(cwd),
        "exit_code": code,
        "stdout": output_text(outcome.stdout, ctx),
        "stderr": output_text(outcome.stderr, ctx),
        "stdout_truncated": outcome.stdout_truncated,
        "stderr_truncated": outcome.stderr_truncated,
        "duration_ms": round(outcome.duration_s * 1000, 2),
        "cpu_seconds": outcome.cpu_seconds,
        "peak_rss_bytes": outcome.peak_rss_bytes,
    }
    if config.output == "json":
        out["parsed"] = ctx.secrets.redact(_parsed(outcome))
    out["artifacts"] = _artifacts(config, schemas, cwd, usage(outcome))
    return out


def preview(raw_config: dict[str, Any], ctx: NodeContext) -> list[dict[str, Any]]:
    """What a dry run would start (argv, cwd, the names of the variables set); runs nothing."""
    try:
        config = Config.model_validate(mask_references(raw_config))
        return [run(config, dataclasses.replace(ctx, dry_run=True))]
    except (ValueError, NodeError) as exc:
        return [{"error": ctx.secrets.redact(str(exc).splitlines()[0])}]


def _argv(config: Config) -> tuple[list[str], list[str]]:
    """The argv as written (shown) and as started (`python3` → this interpreter)."""
    if config.shell is not None:
        shown = ["sh", "-c", config.shell]
        return shown, ["/bin/sh", "-c", config.shell]
    shown = list(config.command or [])
    argv = list(shown)
    if argv[0] in _PYTHON_NAMES:
        argv[0] = sys.executable or shutil.which(argv[0]) or argv[0]
    return shown, argv


def executable_problem(config: Config, base: Path) -> str | None:
    """Why the program could not be started (for `pipeline doctor`), or None: a path must be an
    executable file (relative to `cwd`), a bare name on the PATH the program gets."""
    shown, argv = _argv(config)
    program = argv[0]
    if os.sep in program:
        path = Path(program) if os.path.isabs(program) else base / (config.cwd or "") / program
        if path.is_file() and os.access(path, os.X_OK):
            return None
        return f"{shown[0]}: {path} is not an executable file"
    if has_dynamic(config.env.get("PATH", "")):
        return None  # known only at run time
    if shutil.which(program, path=_environment(config).get("PATH")):
        return None
    return f"{shown[0]} is not on PATH"


def _cwd(config: Config, base: Path) -> Path:
    cwd = base / config.cwd if config.cwd else base
    try:
        if cwd.is_dir():
            return cwd.resolve()  # shown in results and logs: no `..` in it
    except (OSError, ValueError):
        pass
    raise ConfigError(f"config.cwd: {cwd} is not a directory")


def _schema(artifact: Artifact, index: int, base: Path) -> Any:
    if artifact.schema_ is None:
        return None
    try:
        return load_schema(artifact.schema_, base)
    except ValueError as exc:
        raise ConfigError(f"config.artifacts[{index}].schema: {exc}") from None


def _artifacts(config: Config, schemas: list[Any], cwd: Path, usage: dict[str, Any]) -> list[dict[str, Any]]:
    """Each declared artifact's record; NodeError (not retryable) naming every one that fails."""
    records, problems = [], []
    for artifact, schema in zip(config.artifacts, schemas, strict=True):
        name = artifact.schema_ if isinstance(artifact.schema_, str) else "its inline schema"
        record, problem = check_artifact(cwd / artifact.path, artifact.path, schema, name)
        if problem and artifact.optional and not record["exists"]:
            record["valid"], problem = None, None
        records.append(record)
        if problem:
            problems.append(problem)
    if problems:
        raise NodeError("\n".join(problems), retryable=False, details={"artifacts": records, **usage})
    return records


def _environment(config: Config) -> dict[str, str]:
    """os.environ without its secrets, with `env` over it; the interpreter's directory first on
    PATH, so `python3` in a script or a shell line is this interpreter too (unless `env` sets PATH).

    A credential of opsflow's own (an API key, the receiver token, a database URL with its
    password) never reaches a stage by accident: a stage gets a secret only when its `env`
    names it, and then it is scrubbed from everything the stage prints."""
    inherited = {k: v for k, v in os.environ.items() if not is_secret_setting(k, v)}
    env = {**inherited, **config.env}
    if "PATH" not in config.env and sys.executable:
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", os.defpath)])
    env.setdefault("PYTHONUNBUFFERED", "1")  # a Python stage's lines reach the log as they come
    return env


class _LineLog:
    """Output lines to the node's log, redacted: the first MAX_LOGGED_LINES, then a count."""

    def __init__(self, ctx: NodeContext):
        self.ctx, self.count, self.lock = ctx, 0, threading.Lock()

    def __call__(self, stream: str, text: str) -> None:
        with self.lock:
            self.count += 1
            if self.count > MAX_LOGGED_LINES:
                return
        level = logging.WARNING if stream == "stderr" else logging.INFO
        self.ctx.log.log(level, "%s", self.ctx.secrets.redact(text))

    def close(self) -> None:
        if self.count > MAX_LOGGED_LINES:
            self.ctx.log.info("… %d more output lines not logged", self.count - MAX_LOGGED_LINES)


def _parsed(outcome: Outcome) -> Any:
    if outcome.full_stdout is None:
        raise NodeError(f"stdout is over {MAX_JSON_STDOUT_BYTES} bytes, too large to parse as JSON")
    if not outcome.full_stdout.strip():
        raise NodeError("stdout is empty, but `output` is json")
    try:
        return json.loads(outcome.full_stdout)
    except UnicodeDecodeError:
        raise NodeError("stdout is not JSON: not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise NodeError(f"stdout is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
