"""prep_pred, `prep`: image preprocessing as its own service, in front of the model server.

POST /predict/image takes a PNG or JPEG of any size (413 above MLSP_MAX_IMAGE_BYTES or
MLSP_MAX_IMAGE_SIDE, 415 when the bytes are not an image), runs the versioned digits
preprocessing (serving/preprocessing.py) and sends the tensor to `pred` over the Open Inference
Protocol, stamped with `parameters.preprocess_version`. `pred` (serving/ with
MLSP_REQUIRE_CONTRACT) refuses a tensor made for another contract with 422 `skew`, so a prep
and a pred released out of step fail loudly instead of predicting garbage.

Calls to pred: MLSP_PRED_TIMEOUT_SECONDS (1 s), one retry on connection errors. pred down, or a
skew -> 503 naming `pred`; the request's budget spent -> 504. No hard dependency in /readyz:
prep can preprocess while pred restarts, and each request says what is wrong.

    MLSP_PRED_URL=http://127.0.0.1:8001 python -m patterns.prep_pred.prep
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from serving import h1, metrics, preprocessing
from serving.errors import Unavailable, error_fields
from serving.inference import body_doc, json_response
from serving.upstream import (
    Backend,
    Budget,
    Malformed,
    Outcome,
    ProxySettings,
    ServiceUrl,
    call,
    proxy_app,
    upstream_client,
)

PATTERN = "prep_pred"


class PrepSettings(ProxySettings):
    pred_url: ServiceUrl = "http://127.0.0.1:8001"
    """The predictor service (OIP v2 tensors in, predictions out)."""
    pred_model: str = "digits-lr"
    """The model pred serves (its OIP name)."""
    pred_timeout_seconds: float = Field(1.0, gt=0, le=30)
    """Longest a call to pred may take; past it, 503 naming pred."""
    default_budget_ms: int = Field(2000, ge=1, le=60_000)
    """Decoding a large image takes time before pred's 1 s: a slow pred is then a 503 naming
    it (its own timeout), not a 504 (the request's budget)."""


def _model_metadata(body: bytes) -> dict[str, Any]:
    """pred's OIP model metadata, checked for what prep reads from it (else Malformed)."""
    try:
        meta: dict[str, Any] = orjson.loads(body)
        valid = (
            isinstance(meta["inputs"][0]["name"], str)
            and isinstance(meta["parameters"]["labels"], list)
            and isinstance(meta["versions"], list)
            and len(meta["outputs"]) == 2
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        valid = False
    if not valid:
        raise Malformed("pred", "not OIP model metadata")
    return meta


def _infer_request(rid: str, input_name: str, x: npt.NDArray[np.float32]) -> dict[str, Any]:
    """The OIP inference request for one preprocessed image, stamped with its contract."""
    return {
        "id": rid,
        "inputs": [
            {
                "name": input_name,
                "shape": [1, int(x.shape[0])],
                "datatype": "FP32",
                "data": x.tolist(),
            }
        ],
        "parameters": {"preprocess_version": preprocessing.PREPROCESS_VERSION},
    }


def _pred_failure(outcome: Outcome) -> Exception:
    """The error for a failed call to pred: the budget's, or a 503 naming pred (and its code)."""
    if outcome.out_of_budget:
        return outcome.as_error()
    code = (error_fields(outcome.body) or {}).get("code")
    return Unavailable(
        f"pred failed: {outcome.error}" + (f" ({code})" if code else ""),
        dependency="pred",
        reason=code or outcome.error,
    )


def _prediction(body: dict[str, Any], meta: dict[str, Any]) -> tuple[Any, int, dict[str, Any]]:
    """Label, class id and per-label probabilities from pred's answer, read by its metadata."""
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    label_out, scores_out = (o["name"] for o in meta["outputs"])  # OIP metadata order
    labels = meta["parameters"]["labels"]
    class_id = int(outputs[label_out][0])
    probabilities = dict(zip(labels, outputs[scores_out], strict=True))
    return labels[class_id], class_id, probabilities


def build(settings: PrepSettings) -> FastAPI:
    client = upstream_client(settings)
    pred = Backend(name="pred", url=settings.pred_url, timeout=settings.pred_timeout_seconds)
    infer_path = f"/v2/models/{settings.pred_model}/infer"
    known: dict[str, Any] = {}  # pred's model metadata (input name, labels), per version

    up = metrics.DEPENDENCY_UP.labels(settings.service, "pred")

    async def metadata(rid: str, budget: Budget, version: str | None = None) -> dict[str, Any]:
        if known and (version is None or version in known["versions"]):
            return known
        left = min(pred.timeout, budget.left())
        if left <= 0:
            raise budget.spent("before pred's metadata was fetched")
        try:
            resp = await client.send(
                pred.url, "GET", f"/v2/models/{settings.pred_model}", seconds=left, request_id=rid
            )
        except h1.H1Error as exc:
            up.set(0)
            raise Unavailable(
                f"pred is unreachable: {type(exc).__name__}", dependency="pred"
            ) from None
        if resp.status != 200:
            raise Unavailable(f"pred metadata: status {resp.status}", dependency="pred")
        meta = _model_metadata(resp.body)
        up.set(1)
        known.clear()
        known.update(meta)
        return known

    async def predict_image(request: Request, data: bytes, budget: Budget) -> Response:
        rid = request.scope["state"]["request_id"]
        # 413/415/400 before anything is sent; decoding takes milliseconds: off the loop.
        x = await asyncio.to_thread(
            preprocessing.preprocess_image,
            data,
            max_bytes=settings.max_image_bytes,
            max_side=settings.max_image_side,
        )
        meta = await metadata(rid, budget)
        tensor = _infer_request(rid, meta["inputs"][0]["name"], x)
        outcome = await call(
            client,
            pred,
            infer_path,
            budget=budget,
            request_id=rid,
            content=orjson.dumps(tensor),
            service=settings.service,
        )
        if not outcome.ok:
            raise _pred_failure(outcome)
        body = outcome.body or {}
        try:
            meta = await metadata(rid, budget, str(body["model_version"]))
            label, class_id, probabilities = _prediction(body, meta)
        except (KeyError, IndexError, TypeError, ValueError):
            raise Malformed("pred", "not an OIP inference answer for this model") from None
        return json_response(
            {
                "request_id": rid,
                "model": {"name": body["model_name"], "version": body["model_version"]},
                "predictions": [
                    {
                        "label": label,
                        "class_id": class_id,
                        "probabilities": probabilities,
                    }
                ],
                "preprocess_version": preprocessing.PREPROCESS_VERSION,
                "pred_latency_ms": round(outcome.latency_ms, 2),
            }
        )

    summary = "Preprocess a PNG/JPEG here, predict on pred (OIP, versioned contract)"
    return proxy_app(
        settings,
        {"/predict/image": (summary, predict_image)},
        limit=settings.max_image_bytes,
        content=body_doc(rows=False, images=True)["requestBody"]["content"],
    )


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, PrepSettings, build))
