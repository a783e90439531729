"""Each definition's deployment as prefect.yaml writes it: what `pipeline serve` registers too.

`pipeline deployments > prefect.yaml` writes these, and `pipeline serve` registers the
same name, description, parameters, schedules and event triggers, so the two ways of
deploying cannot drift apart. A test keeps the checked-in prefect.yaml current.
Imports no Prefect (the command answers at once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flows.definition import Pipeline, list_definitions, load_definition
from flows.triggers import event_trigger_specs, schedule_specs
from nodes.errors import DefinitionError

__all__ = ["ENTRYPOINT", "deployment_spec", "deployment_specs", "prefect_yaml"]

ENTRYPOINT = "flows/pipeline.py:run_pipeline"

_HEADER = """\
# opsflow on a real Prefect server: one deployment of the generic flow per definition.
# Generated from the definitions (their description, parameters and triggers) by
#   pipeline deployments > prefect.yaml
# so edit the definitions, not this file (tests/test_deployments_yaml.py keeps it current).
#   prefect work-pool create opsflow --type process --overwrite
#   prefect deploy --all
#   prefect automation create --from-file deployments/crashed-runs.json   (once)
#   prefect worker start --pool opsflow
#   prefect deployment run 'run-pipeline/health-check'
# (`pipeline serve` registers the same deployments from the definitions, without a work pool.)
name: opsflow
prefect-version: 3.8.8

build: null
push: null

# run the code in place: the worker's working directory is this checkout
pull:
  - prefect.deployments.steps.set_working_directory:
      directory: "{{ $PWD }}"

definitions:
  work_pool: &opsflow_pool
    name: opsflow
    work_queue_name: default
    job_variables:
      env:
        # heartbeats every 30 s: a run whose worker dies is marked Crashed (deployments/crashed-runs.json)
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY: "30"

deployments:
"""


def deployment_spec(pipeline: Pipeline) -> dict[str, Any]:
    """`run-pipeline/<name>`: its description, parameters, schedules and event triggers.

    Runs a schedule makes carry `source: schedule`, runs an event starts `source: event`;
    a person's run (the UI, `prefect deployment run`) keeps the flow's default source.
    """
    spec: dict[str, Any] = {"name": pipeline.name, "entrypoint": ENTRYPOINT}
    if pipeline.description:
        spec["description"] = pipeline.description
    spec["parameters"] = {"definition": pipeline.name}
    schedules = schedule_specs(pipeline.definition.triggers)
    if schedules:
        spec["schedules"] = schedules
    triggers = event_trigger_specs(pipeline.name, pipeline.definition.triggers)
    if triggers:
        spec["triggers"] = triggers
    return spec


def deployment_specs(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every definition's deployment; DefinitionError naming each invalid file (none is left out
    quietly: a prefect.yaml without a deployment would delete nothing, but deploy nothing either)."""
    specs: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in list_definitions(directory):
        try:
            specs.append(deployment_spec(load_definition(path)))
        except DefinitionError as exc:
            problems.extend(f"{path.name}: {problem}" for problem in exc.problems)
    if problems:
        raise DefinitionError(problems)
    return specs


def prefect_yaml(specs: list[dict[str, Any]]) -> str:
    """prefect.yaml for these deployments, each on the opsflow process work pool."""
    import yaml

    blocks = []
    for spec in specs:
        text = yaml.safe_dump([spec], sort_keys=False, allow_unicode=True, width=1_000_000, indent=2)
        lines = ["  " + line if line else line for line in text.splitlines()]
        blocks.append("\n".join([*lines, "    work_pool: *opsflow_pool"]) + "\n")
    return _HEADER + "\n".join(blocks)
