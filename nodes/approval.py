"""`approval` node: a person approves or rejects before the run goes on.

Pausing belongs to the flow run (Prefect pauses flows, not tasks), so the flow waits
for the answer (Prefect UI form or `pipeline approve`) and this module turns the
answer, or its absence, into the node's output for a `condition` to branch on.
`run` is never called: `flows.approval` asks, then records the decision as the node's result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from nodes.base import NodeContext
from nodes.errors import ConfigError


class Config(BaseModel):
    """How long to wait, and what silence means."""

    model_config = ConfigDict(extra="forbid")

    # the question is also the answer form's description and the paused run's state message
    message: str = Field(
        default="Approve this run?", description="What the approver is asked (shown in logs)."
    )
    timeout_seconds: int = Field(
        default=3600, ge=1, le=7 * 86400, description="How long to wait for an answer."
    )
    on_timeout: Literal["reject", "approve"] = Field(
        default="reject", description="The decision when nobody answers in time."
    )
    poll_seconds: float = Field(
        default=2.0, gt=0, le=60, description="How often the run checks for the answer."
    )


class Answer(BaseModel):
    """The form the approver fills in (the Prefect UI renders it from this model)."""

    # no default: the person chooses, the form never answers for them
    approve: bool = Field(description="Approve (true) or reject (false).")
    comment: str = Field(default="", description="Why: kept on the run with the decision.")
    by: str = Field(default="", description="Who decides (your name or handle).")


def outcome(config: Config, answer: Answer | None) -> dict[str, Any]:
    """The node output for an answer, or for a timeout (`answer` None)."""
    if answer is None:
        approved, comment, by = config.on_timeout == "approve", "", "timeout"
    else:
        approved, comment, by = answer.approve, answer.comment, answer.by or "unknown"
    return {
        "approved": approved,
        "decision": "approved" if approved else "rejected",
        "comment": comment,
        "by": by,
        "decided_at": datetime.now(UTC).isoformat(),
        "timed_out": answer is None,
        "message": config.message,
    }


def run(config: Config, ctx: NodeContext) -> dict[str, Any]:
    raise ConfigError("an approval node waits inside a Prefect flow run; run the pipeline with the flow")
