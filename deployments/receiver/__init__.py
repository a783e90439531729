"""The alert webhook receiver: a FastAPI app that turns alert payloads into flow runs.

`create_app` builds it (tests and `pipeline serve --receiver`); `main` serves it.
"""

from deployments.receiver.app import create_app, freeze_heap, main

__all__ = ["create_app", "freeze_heap", "main"]
