"""Request and response schemas of the shared API (docs/catalogue.md), with their limits.

Requests are validated from raw bytes by pydantic-core (`validate_json`): one pass, no
intermediate dict, strict types (a string is never coerced to a number) and finite floats only.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, TypeAdapter

FiniteFloat = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Row = Annotated[list[FiniteFloat], Field(min_length=1, max_length=4096)]


class PredictRequest(BaseModel):
    """Rows of feature values; each row has as many numbers as the model has features."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"instances": [[5.1, 3.5, 1.4, 0.2]]}]}
    )

    instances: Annotated[list[Row], Field(min_length=1)]


class ModelRef(BaseModel):
    name: str
    version: str


class PredictionOut(BaseModel):
    """A classifier's answer for one row."""

    label: str
    class_id: int
    probabilities: dict[str, float]


class OutlierOut(BaseModel):
    """An outlier detector's answer for one row (an ocsvm model): its decision score."""

    label: str
    class_id: int
    score: float


class PredictResponse(BaseModel):
    request_id: str
    model: ModelRef
    predictions: list[PredictionOut | OutlierOut]


class ErrorDetail(BaseModel):
    code: str
    message: str
    request_id: str | None
    field: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail


class OipErrorResponse(BaseModel):
    """An error on the OIP v2 routes: the message as `error`, as OIP clients read it."""

    error: str
    code: str
    request_id: str | None
    field: str | None = None


class Readiness(BaseModel):
    ready: bool
    reasons: list[str]
    """Why the service is not ready (empty when ready)."""
    warnings: list[str] | None = None
    """Conditions that do not flip readiness, e.g. a refused configuration file while the last
    good one is served; absent when there are none."""


PREDICT_ADAPTER: TypeAdapter[PredictRequest] = TypeAdapter(PredictRequest)
