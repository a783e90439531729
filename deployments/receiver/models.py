"""The receiver's answers and requests, as its OpenAPI document shows them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.request import DEFAULT_SOURCE

__all__ = [
    "ALERT",
    "DEFINITION",
    "Accepted",
    "Delivery",
    "ErrorBody",
    "ExecuteRequest",
    "error_responses",
    "json_body",
]


class Accepted(BaseModel):
    """The flow run that will handle the alert (the existing one for a re-delivery)."""

    flow_run_id: str | None = Field(
        description="Prefect flow run id; null while a journaled alert waits for its run."
    )
    definition: str = Field(description="Definition (and deployment) name.")
    trace_id: str | None = Field(default=None, description="The run's trace id.")
    duplicate: bool = Field(default=False, description="True when this delivery found an existing run.")
    delivery_id: str | None = Field(
        default=None, description="With a journal: the delivery, for GET /deliveries/{id}."
    )
    queued: bool = Field(default=False, description="With a journal: the run is not created yet.")


class Delivery(BaseModel):
    """A journaled alert and what became of it."""

    delivery_id: str
    definition: str | None = Field(default=None, description="Null once expired.")
    trace_id: str | None = Field(default=None, description="Null once expired.")
    status: str = Field(
        description="queued (waiting for Prefect), created, failed (refused by Prefect; a re-delivery "
        "queues it again), or expired (pruned after the journal's retention)."
    )
    flow_run_id: str | None = None
    attempts: int = Field(default=0, description="Failed attempts to create the run so far.")
    error: str | None = Field(default=None, description="Why the last attempt failed.")


class ErrorBody(BaseModel):
    error: str = Field(description="What is wrong; never a traceback, never a secret.")


class ExecuteRequest(BaseModel):
    """Run a definition with this payload; absent fields take the deployment's defaults."""

    model_config = ConfigDict(extra="forbid")

    payload: dict[str, Any] = Field(default_factory=dict, description="The run's payload (an alert, or {}).")
    source: str = Field(default=DEFAULT_SOURCE, max_length=64, description="Who asked for the run.")
    trace_id: str | None = Field(default=None, max_length=128, description="Trace id; default a new one.")
    environment: str | None = Field(default=None, max_length=64, description="Environment name.")
    incident_id: str | None = Field(
        default=None, max_length=64, description="Run about this stored incident (e.g. re-analysis)."
    )


_ERRORS = {
    400: "Bad JSON, or a body that is not a JSON object.",
    401: "Missing or wrong bearer token (when OPSFLOW_RECEIVER_TOKEN is set).",
    404: "Unknown definition, or no deployment for it (or, for a delivery, no such delivery).",
    413: "Body over 1 MiB.",
    415: "Content-Type is not JSON.",
    502: "Prefect refused the flow run.",
    503: "Prefect cannot take the run now: retry.",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


def json_body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    """The request body for the OpenAPI doc (routes read bodies themselves, with a size limit)."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


ALERT = {"type": "object", "description": "An alert webhook payload (Alertmanager, Grafana, ...)."}
DEFINITION = {"type": "object", "description": "A definition JSON (see `pipeline schema`)."}
