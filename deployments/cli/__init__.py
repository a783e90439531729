"""The `pipeline` command: `main` is the console script (pyproject's `pipeline = deployments.cli:main`)."""

from deployments.cli.app import main

__all__ = ["main"]
