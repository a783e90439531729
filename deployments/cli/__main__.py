"""`python -m deployments.cli`: the same command as the `pipeline` console script."""

import os

os.environ.setdefault("PYTHONIOENCODING", "utf-8")

from deployments.cli import main  # noqa: E402

main()
