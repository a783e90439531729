"""`pipeline deployments`: prefect.yaml generated from the definitions (never importing Prefect)."""

from __future__ import annotations

import typer

__all__ = ["deployments"]


def deployments() -> None:
    """Print prefect.yaml for every definition: `pipeline deployments > prefect.yaml`.

    Everything in it comes from the definitions, as `pipeline serve` registers it.
    """
    from deployments.specs import deployment_specs, prefect_yaml

    typer.echo(prefect_yaml(deployment_specs()), nl=False)
