"""What Prefect's task engine logs when a node fails: one line for an expected failure.

A traceback in the UI and the worker's console is for bugs; a delivery refused with a
5xx is an expected failure, and its record is the engine's one line.
"""

from __future__ import annotations

import logging

__all__ = ["one_line_node_errors"]


class _OneLine(logging.Filter):
    """A NodeError is an expected failure (a 5xx, a refused connection): its record is the
    engine's one line, `Task run failed with exception: DeliveryError('...')`, with no
    traceback. Any other exception (`execute_node` wraps it, marked `unexpected`) is a
    bug and keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from nodes.errors import NodeError

        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, NodeError) and not getattr(exc, "unexpected", False):
            record.exc_info, record.exc_text = None, None
        return True


_ONE_LINE = _OneLine()


def one_line_node_errors() -> None:
    """Drop the traceback from the task engine's records of NodeErrors (API, UI and console)."""
    logger = logging.getLogger("prefect.task_runs")
    if _ONE_LINE not in logger.filters:
        logger.addFilter(_ONE_LINE)
