"""sync_async, the proxy: one request gets the fast model's answer now and a ticket for the
heavy model's answer later (the book's time-difference pattern).

POST /predict (rows) or /predict/image: calls `fast` synchronously, then enqueues the same
input, with the fast labels, for the heavy `worker` through the asynchronous queue
(serving/queue.py, so every guarantee of that pattern holds). The final answer comes by polling
GET /jobs/{id} or pushed by GET /jobs/{id}/events, and says whether it `revised` the fast one.

An image is decoded here once before anything else (serving/jobs.py only checks its header):
one that cannot be decoded is a 400 at once, never a call to `fast` and a job that fails later.

Both dependencies are soft, so neither flips /readyz:
- fast fails or times out  -> 202 {"job_id", "fast": null, "final_url"};
- Redis is down            -> 200 {"job_id": null, "fast": {...}, "final": "unavailable"};
- both                     -> 503.

    python -m patterns.sync_async.proxy
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from serving import h1, preprocessing
from serving.errors import Unavailable
from serving.inference import ERRORS, body_doc, json_response, request_id
from serving.jobs import JobSettings, job_api, read_job_input
from serving.queue import JobQueue
from serving.redis_client import OUTAGE
from serving.state import ServiceState
from serving.upstream import ServiceUrl, Upstream

log = logging.getLogger("sync_async")

PATTERN = "sync_async"


class ProxySettings(JobSettings):
    fast_url: ServiceUrl = "http://127.0.0.1:8001"
    """The fast model's server (answers now)."""
    fast_timeout_seconds: float = Field(0.5, gt=0, le=5)
    """Read budget for the fast model; past it the client gets fast:null and the ticket."""


def _fast_answer(status: int, raw: bytes) -> dict[str, Any] | None:
    """The fast model's answer without its request_id, or None (logged) if it is not one."""
    if status != 200:
        log.warning("fast model failed", extra={"status": status})
        return None
    try:
        body: dict[str, Any] = orjson.loads(raw)
    except orjson.JSONDecodeError:
        log.warning("fast model answered something else than JSON")
        return None
    preds = body.get("predictions") if isinstance(body, dict) else None
    if not isinstance(preds, list) or not all(isinstance(p, dict) and "label" in p for p in preds):
        log.warning("fast model answered an unexpected body")
        return None
    body.pop("request_id", None)
    return body


async def _submit(
    queue: JobQueue, payload: dict[str, bytes | str], fast: dict[str, Any] | None
) -> str | None:
    """The job's id, or None when the queue is down or full but the fast answer can go out."""
    try:
        job_id, _ = await queue.submit(payload)
    except (*OUTAGE, OSError) as exc:
        if fast is None:
            raise Unavailable(
                "neither the fast model nor the queue is available",
                dependency="fast,redis",
            ) from exc
        return None
    except Unavailable:  # queue_full: the fast answer still goes out
        if fast is None:
            raise
        return None
    return job_id


def build(settings: ProxySettings) -> FastAPI:
    upstream = Upstream()  # keep-alive pool to `fast` (serving/h1.py)

    async def ask_fast(payload: dict[str, bytes | str], rid: str | None) -> dict[str, Any] | None:
        image = payload["kind"] == "image"
        content = payload["input"]
        try:
            resp = await upstream.send(  # a prediction has no side effect: connects retried
                settings.fast_url,
                "POST",
                "/predict/image" if image else "/predict",
                seconds=settings.fast_timeout_seconds,
                request_id=rid,
                body=content if isinstance(content, bytes) else content.encode(),
                headers={"Content-Type": "image/png" if image else "application/json"},
            )
        except h1.H1Error as exc:
            log.warning("fast model unavailable", extra={"error": type(exc).__name__})
            return None
        return _fast_answer(resp.status, resp.body)

    async def decodable(payload: dict[str, bytes | str]) -> None:
        """Decode an image input (400/413 if it cannot be): what `fast` and the worker do."""
        data = payload["input"]
        if payload["kind"] == "image" and isinstance(data, bytes):
            await asyncio.to_thread(
                preprocessing.decode,
                data,
                max_bytes=settings.max_image_bytes,
                max_side=settings.max_image_side,
            )

    def routes(app: FastAPI, state: ServiceState, queue: JobQueue) -> None:
        async def handle(request: Request) -> Response:
            payload = await read_job_input(request, settings)
            await decodable(payload)
            rid = request_id(request)
            fast = await ask_fast(payload, rid)
            if fast is not None:
                labels = [p["label"] for p in fast["predictions"]]
                payload["fast"] = orjson.dumps(labels)
            job_id = await _submit(queue, payload, fast)
            if job_id is None:
                return json_response({"job_id": None, "fast": fast, "final": "unavailable"})
            url = f"/jobs/{job_id}"
            body = {"job_id": job_id, "fast": fast, "final_url": url, "events_url": f"{url}/events"}
            return json_response(body, 200 if fast is not None else 202, {"Location": url})

        summary = "The fast answer now, a ticket for the heavy model's answer"
        for path in ("/predict", "/predict/image"):
            app.add_api_route(  # either route takes rows (JSON) or an image, by Content-Type
                path,
                handle,
                methods=["POST"],
                tags=["predict"],
                summary=summary,
                responses=ERRORS,
                openapi_extra=body_doc(rows=True, images=True),
            )

    app, _ = job_api(settings, PATTERN, extra=routes, submit_route=False, redis_is_hard=False)
    return app


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, ProxySettings, build))
