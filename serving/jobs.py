"""The HTTP side of the job queue (serving/queue.py) and the model worker behind it.

- `read_job_input`: a request body (feature rows as JSON, or a PNG/JPEG) checked as far as the
  API can without the model, ready to enqueue.
- `install_job_routes`: GET /jobs/{id} (poll) and GET /jobs/{id}/events (server-sent events).
- `model_handler`: scores a batch of jobs in one vectorised ONNX call.
- `worker_app`: a worker process with /livez, /readyz (model + golden test + Redis + a read
  loop that reads) and /metrics, consuming the queue in the background.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field, ValidationError

from serving import metrics, preprocessing
from serving.app import create_app
from serving.errors import ApiError, BadRequest
from serving.inference import (
    ERRORS,
    body_doc,
    invalid_from_pydantic,
    json_response,
    prediction_body,
    read_body,
    to_matrix,
)
from serving.model import ModelCard, Prediction
from serving.predictor import Call
from serving.queue import (
    PENDING,
    Delivery,
    Handler,
    JobQueue,
    Outcome,
    QueueSettings,
    Rejected,
    Worker,
    wait_for_terminal,
)
from serving.redis_client import connect, outage_as_503, ready_check
from serving.schemas import PREDICT_ADAPTER
from serving.server import serve
from serving.state import ServiceState

IMAGE_TYPES = ("image/png", "image/jpeg")


class JobSettings(QueueSettings):
    input_features: int | None = Field(None, ge=1)
    """Features per row the API checks before enqueueing (the worker checks its model too)."""
    events_timeout_seconds: float = Field(60.0, gt=0, le=600)
    """Longest a GET /jobs/{id}/events stream waits for the final answer."""


async def read_job_input(request: Request, s: JobSettings) -> dict[str, bytes | str]:
    """The stream fields of a job: `kind` (instances | image) and `input` (the raw body)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype in IMAGE_TYPES:
        data = await read_body(request, s.max_image_bytes)
        await asyncio.to_thread(
            preprocessing.open_checked, data, max_bytes=s.max_image_bytes, max_side=s.max_image_side
        )
        return {"kind": "image", "input": data}
    body = await read_body(request, s.max_body_bytes)
    try:
        req = PREDICT_ADAPTER.validate_json(body)
    except ValidationError as exc:
        raise invalid_from_pydantic(exc) from None
    to_matrix(req.instances, s.input_features or len(req.instances[0]), s.max_batch)
    return {"kind": "instances", "input": body}


def idempotency_key(request: Request, s: JobSettings) -> str | None:
    """The Idempotency-Key header, if any (400 when malformed). The queue binds it to the
    sha256 of the payload (the same key with another body: 422 naming the header) and keeps it
    `result_ttl_seconds` from its first use, per pattern (key prefix `mlsp:<pattern>:idem:`)."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return None
    if not 0 < len(key) <= s.idempotency_key_max or not key.isprintable():
        raise BadRequest(
            f"Idempotency-Key must be 1..{s.idempotency_key_max} printable characters",
            field="Idempotency-Key",
        )
    return key


def sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n\n"


EVENTS_DOC: dict[int | str, dict[str, Any]] = {
    200: {  # each event's data is a JSON object: the job, or an error
        "content": {"text/event-stream": {"schema": {"type": "object"}}},
        "description": "events `pending`, then `final`, `timeout` or `error`",
    },
    **ERRORS,
}


def install_job_routes(app: FastAPI, queue: JobQueue, s: JobSettings) -> None:
    @app.get(
        "/jobs/{job_id}",
        tags=["jobs"],
        summary="A job's status and, once done, result",
        responses=ERRORS,
    )
    async def get_job(job_id: str) -> Response:
        async with outage_as_503():
            return json_response(await queue.status_or_404(job_id))

    @app.get(
        "/jobs/{job_id}/events",
        tags=["jobs"],
        summary="Server-sent events: `pending` at once, then `final` (or `timeout`)",
        response_class=StreamingResponse,
        responses=EVENTS_DOC,
    )
    async def job_events(job_id: str) -> Response:
        async with outage_as_503():
            first = await queue.status_or_404(job_id)

        async def stream() -> AsyncIterator[bytes]:
            if first["status"] != PENDING:
                yield sse("final", first)
                return
            yield sse("pending", first)
            try:
                job = await wait_for_terminal(queue, first["job_id"], s.events_timeout_seconds)
            except ApiError as exc:
                yield sse("error", exc.body(None)["error"])
                return
            except Exception as exc:  # Redis went away mid-stream: say so, then end
                yield sse(
                    "error", {"code": "unavailable", "dependency": "redis", "message": str(exc)}
                )
                return
            if job is None:
                yield sse("error", {"code": "not_found", "message": "the job expired"})
            elif job["status"] == PENDING:
                yield sse("timeout", job)
            else:
                yield sse("final", job)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


def _decode(d: Delivery, card: ModelCard, s: JobSettings) -> npt.NDArray[np.float32] | Rejected:
    kind, data = d.get("kind"), d.get("input") or b""
    try:
        if kind == b"image":
            if card.preprocess is None:
                return Rejected(f"{card.name} takes feature rows, not images")
            return preprocessing.preprocess_image(
                data, max_bytes=s.max_image_bytes, max_side=s.max_image_side
            ).reshape(1, -1)
        req = PREDICT_ADAPTER.validate_json(data)
        return to_matrix(req.instances, card.n_features, s.max_batch)
    except ValidationError as exc:
        return Rejected(invalid_from_pydantic(exc).message)
    except ApiError as exc:
        return Rejected(exc.message)


def model_handler(state: ServiceState, pattern: str) -> Handler:
    """Score every valid job of a batch in one ONNX call; bad input is rejected per job. A job
    carrying `fast` (the labels a fast model answered) gets `revised` in its result."""
    s = state.settings
    assert isinstance(s, JobSettings)

    async def handle(batch: list[Delivery]) -> list[Outcome]:
        predictor = state.ready()
        card = predictor.card
        decoded = [_decode(d, card, s) for d in batch]
        rows = [x for x in decoded if not isinstance(x, Rejected)]
        out: Prediction | None = None
        if rows:  # a batch, off the event loop whatever MLSP_INFERENCE_OFFLOAD says
            out = await predictor.predict(np.vstack(rows), Call(offload=True))
        outcomes: list[Outcome] = []
        at = 0
        for d, x in zip(batch, decoded, strict=True):
            if isinstance(x, Rejected):
                outcomes.append(x)
                continue
            assert out is not None
            n = len(x)
            part = Prediction(out.class_ids[at : at + n], out.scores[at : at + n])
            at += n
            body = prediction_body(d.job_id, card, part)
            del body["request_id"]
            fast = d.get("fast")
            if fast is not None:
                labels = [p["label"] for p in body["predictions"]]
                body["fast_labels"] = orjson.loads(fast)
                body["revised"] = labels != body["fast_labels"]
                metrics.REVISIONS.labels(pattern, str(body["revised"]).lower()).inc()
            outcomes.append(body)
        return outcomes

    return handle


def worker_app(settings: JobSettings, pattern: str) -> FastAPI:
    """A queue worker with the usual health and metrics endpoints; it consumes in the
    background once its model passed the golden test, and stops reading on SIGTERM."""
    client = connect(settings.redis_url)
    queue = JobQueue(client, pattern, settings)

    def extend(app: FastAPI, state: ServiceState) -> None:
        state.ready_checks.append(ready_check(client, settings.service))
        worker = Worker(queue, model_handler(state, pattern))
        app.state.worker = worker

        async def consuming() -> str | None:  # Redis may answer PING while reads fail
            return worker.not_ready()

        state.ready_checks.append(consuming)

        async def consume() -> None:
            ready = await state.wait_for_model()
            try:
                if ready is not None:
                    await worker.run(lambda: state.draining)
            except Exception as exc:  # never a live process that silently stopped consuming
                state.die(f"queue consumer stopped: {exc!r}")
            finally:
                await client.aclose()

        state.background.append(consume)

    return create_app(settings, extend=extend)


def job_api(
    settings: JobSettings,
    pattern: str,
    *,
    extra: Any = None,
    submit_route: bool = True,
    redis_is_hard: bool = True,
) -> tuple[FastAPI, JobQueue]:
    """An API that enqueues (POST /jobs -> 202 + Location) and answers polls.
    `extra(app, state, queue)` adds routes; `redis_is_hard=False` keeps Redis out of /readyz
    (for a service that still answers without it)."""
    client = connect(settings.redis_url)
    queue = JobQueue(client, pattern, settings)

    def extend(app: FastAPI, state: ServiceState) -> None:
        if redis_is_hard:
            state.ready_checks.append(ready_check(client, settings.service))
        install_job_routes(app, queue, settings)
        if not submit_route:
            if extra is not None:
                extra(app, state, queue)
            return

        @app.post(
            "/jobs",
            status_code=202,
            tags=["jobs"],
            summary="Enqueue a prediction: feature rows (JSON) or a PNG/JPEG; 202 + Location",
            responses=ERRORS,
            openapi_extra=body_doc(rows=True, images=True),
        )
        async def submit(request: Request) -> Response:
            payload = await read_job_input(request, settings)
            key = idempotency_key(request, settings)
            async with outage_as_503():
                job_id, created = await queue.submit(payload, key)
            url = f"/jobs/{job_id}"
            headers = {"Location": url}
            if not created:
                headers["Idempotent-Replayed"] = "true"
            return json_response(
                {"job_id": job_id, "status": PENDING, "status_url": url}, 202, headers
            )

        if extra is not None:
            extra(app, state, queue)

    return create_app(settings, needs_model=False, extend=extend), queue


def serve_worker(pattern: str) -> int:
    """Entry point of a queue worker process (settings from MLSP_*)."""
    os.environ.setdefault("MLSP_PATTERN", pattern)
    settings = JobSettings()
    return serve(worker_app(settings, pattern), settings)


def serve_job_api(pattern: str) -> int:
    """Entry point of a job API process (settings from MLSP_*)."""
    os.environ.setdefault("MLSP_PATTERN", pattern)
    settings = JobSettings()
    return serve(job_api(settings, pattern)[0], settings)
