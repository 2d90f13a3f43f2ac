"""Around a predictor (serving/predictor.py): a request parsed into a float32 batch, an image
turned into its tensor (pre-processing), a prediction shaped into the shared API's JSON body
(post-processing), and the JSON encoding every route uses.

The shared API's routes (serving/app.py), the OIP v2 routes (serving/oip.py), the queue
(serving/jobs.py) and the patterns all parse and shape through these functions, so a 4xx
names the same field whichever route refused the input.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from serving import preprocessing
from serving.errors import ApiError, BadRequest, InvalidInput, NotFound, field_path
from serving.middleware import read_asgi_body
from serving.model import ModelCard, Prediction
from serving.predictor import Batch
from serving.schemas import PREDICT_ADAPTER, ErrorResponse, OipErrorResponse, PredictRequest
from serving.settings import ServingSettings

JSON = "application/json"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422, 503, 504)
}
"""The error responses a prediction route documents in OpenAPI."""
OIP_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": OipErrorResponse} for code in (400, 404, 413, 415, 422, 503, 504)
}
"""The same on the OIP v2 routes, in their error shape (serving/errors.py)."""
BINARY: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}


def body_doc(*, rows: bool = True, images: bool = False) -> dict[str, Any]:
    """The OpenAPI `requestBody` (for `openapi_extra`) of a route that takes the shared API's
    feature rows as JSON and/or a PNG/JPEG."""
    content: dict[str, Any] = {}
    if rows:
        ref = "#/components/schemas/{model}"
        content[JSON] = {"schema": PredictRequest.model_json_schema(ref_template=ref)}
    if images:
        content.update({"image/png": BINARY, "image/jpeg": BINARY})
    return {"requestBody": {"required": True, "content": content}}


def encode(content: Any) -> bytes:
    """JSON bytes (numpy arrays and scalars included)."""
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def json_response(
    content: Any, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(encode(content), status_code=status_code, headers=headers, media_type=JSON)


def request_id(request: Request) -> str | None:
    rid: str | None = request.scope.get("state", {}).get("request_id")
    return rid


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    return await read_asgi_body(
        request.receive, limit, int(declared) if declared.isdigit() else None
    )


def invalid_from_pydantic(exc: ValidationError | RequestValidationError) -> ApiError:
    errors = exc.errors()
    if any(e["type"] == "json_invalid" for e in errors):
        return BadRequest(f"body is not valid JSON: {errors[0]['msg']}", field="body")
    pairs = []
    for e in errors:
        loc = (
            [p for p in e["loc"] if p != "body"]
            if isinstance(exc, RequestValidationError)
            else list(e["loc"])
        )
        pairs.append((field_path(loc), str(e["msg"])))
    return InvalidInput(pairs)


def to_matrix(
    rows: list[list[float]], width: int, max_batch: int, field: str = "instances"
) -> Batch:
    """Check the batch size and row widths; cast to float32 (values too large become 422)."""
    if len(rows) > max_batch:
        raise InvalidInput([(field, f"at most {max_batch} rows per request, got {len(rows)}")])
    for i, row in enumerate(rows):
        if len(row) != width:
            raise InvalidInput([(f"{field}[{i}]", f"expected {width} features, got {len(row)}")])
    with np.errstate(over="ignore"):
        x = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(x).all():
        r, c = (int(v) for v in np.argwhere(~np.isfinite(x))[0])
        raise InvalidInput([(f"{field}[{r}][{c}]", "value is outside the float32 range")])
    return x


def parse_instances(body: bytes) -> list[list[float]]:
    """A /predict body -> its rows of finite numbers (400/422 naming the field if not); the
    width is the model's business (`parse_rows`, or the services behind a proxy)."""
    try:
        return PREDICT_ADAPTER.validate_json(body).instances
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None


def parse_rows(body: bytes, card: ModelCard, max_batch: int) -> Batch:
    """A /predict body -> the float32 matrix the model takes (422 naming the field if not)."""
    return to_matrix(parse_instances(body), card.n_features, max_batch)


def require_images(card: ModelCard) -> ModelCard:
    """The card of a model that takes images (it declares its preprocessing); else 404."""
    if card.preprocess is None:
        raise NotFound(f"{card.name} takes feature rows, not images: use POST /predict")
    return card


async def image_batch(settings: ServingSettings, data: bytes) -> Batch:
    """PNG/JPEG bytes -> one row of features (serving/preprocessing.py, with its size and
    format limits); decoding takes milliseconds, so off the event loop."""
    x = await asyncio.to_thread(
        preprocessing.preprocess_image,
        data,
        max_bytes=settings.max_image_bytes,
        max_side=settings.max_image_side,
    )
    return x.reshape(1, -1)


def prediction_body(rid: str | None, card: ModelCard, out: Prediction) -> dict[str, Any]:
    """The shared API's answer: the model, and per row its label, class id and scores."""
    labels = card.labels
    if card.task == "outlier":
        preds = [
            {"label": labels[c], "class_id": c, "score": s[0]}
            for c, s in zip(out.class_ids.tolist(), out.scores, strict=True)
        ]
    else:
        preds = [
            {"label": labels[c], "class_id": c, "probabilities": dict(zip(labels, s, strict=True))}
            for c, s in zip(out.class_ids.tolist(), out.scores, strict=True)
        ]
    return {
        "request_id": rid,
        "model": {"name": card.name, "version": card.version},
        "predictions": preds,
    }
