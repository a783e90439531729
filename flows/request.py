"""What a run is asked to do: the flow's parameters, their defaults and the flow's name, in one place.

The CLI, the receiver, `pipeline serve`, `run-stage` and the pipeline hooks all build
or read a `RunRequest` instead of spelling the parameters out, so a default (the
`source` of a run nobody named, say) cannot differ between them. Importing this
module imports no Prefect.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nodes.base import RunInfo

if TYPE_CHECKING:
    from flows.definition import Pipeline

__all__ = ["DEFAULT_ENVIRONMENT", "DEFAULT_SOURCE", "FLOW_NAME", "RunRequest"]

FLOW_NAME = "run-pipeline"
DEFAULT_SOURCE = "api"
DEFAULT_ENVIRONMENT = "development"


@dataclasses.dataclass(frozen=True)
class RunRequest:
    """The parameters of one flow run of `run-pipeline` (see `flows.pipeline.run_pipeline`).

    The flow's docstring says the same for each (its `Args:` are the descriptions of the
    Prefect UI's run form): keep the two in step.

    - `definition`: a name from definitions/, a file path, `block:NAME`, or the whole JSON;
    - `payload`: what the run is about, as sent (an alert webhook body, or any JSON object);
    - `source`: where the run came from (cli, api, receiver, schedule, ...), a tag of the run;
    - `environment`: the environment the run is for;
    - `trace_id`: an id to follow the run by; the flow run id when empty;
    - `only` / `skip`: the node ids to run only, or to skip;
    - `incident_id`: runs the pipeline about an incident already in the store;
    - `continue_on_error`: the other nodes run after a required one failed (status partial);
    - `http`: the raw webhook request (headers and body) the receiver kept for a signed
      format, apart from the payload;
    - `alert_format`: the payload's alert format as the receiver detected it, so an
      ingest node set to `auto` takes it instead of detecting it again;
    - `from_run` / `from_node`: start at node `from_node`, taking the outputs of the
      nodes not after it from past run `from_run` (`pipeline retry RUN --from NODE`).
    """

    definition: str | dict[str, Any]
    payload: dict[str, Any] = dataclasses.field(default_factory=dict)
    source: str = DEFAULT_SOURCE
    environment: str = DEFAULT_ENVIRONMENT
    trace_id: str | None = None
    only: list[str] | None = None
    skip: list[str] | None = None
    incident_id: str | None = None
    continue_on_error: bool = False
    http: dict[str, Any] | None = None
    alert_format: str | None = None
    from_run: str | None = None
    from_node: str | None = None

    @classmethod
    def from_parameters(cls, params: Mapping[str, Any] | None) -> RunRequest:
        """A run's request from its stored parameters; absent or null values take the defaults."""
        params = params or {}
        known = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in params.items() if k in known and v is not None}
        return cls(**{"definition": "", **given})

    def run_info(self, pipeline: Pipeline, *, run_id: str | None, ui_url: str | None = None) -> RunInfo:
        """The run as its nodes see it (`run.*` in templates); the trace id defaults to the run's id."""
        return RunInfo(
            trace_id=self.trace_id or (run_id or uuid.uuid4().hex).replace("-", ""),
            run_id=run_id,
            definition=pipeline.name,
            definition_version=pipeline.definition_version,
            source=self.source,
            environment=self.environment,
            configured=pipeline.configured(),
            ui_url=ui_url,
            definition_dir=pipeline.directory,
        )

    def parameters(self) -> dict[str, Any]:
        """The flow run's parameters: the definition, the payload and what differs from the defaults.

        A default is left out, so a deployment's own default (an `environment: production`
        set on it) is what a run gets unless the caller said otherwise.
        """
        out: dict[str, Any] = {"definition": self.definition, "payload": self.payload}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name not in out and value is not None and value != _default(f):
                out[f.name] = value
        return out


def _default(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default
