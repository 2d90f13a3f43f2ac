"""sync_async, the proxy: one request gets the fast model's answer now and a ticket for the
heavy model's answer later (the book's time-difference pattern).

POST /predict (rows) or /predict/image: calls `fast` synchronously, then enqueues the same
input, with the fast labels, for the heavy `worker` through the asynchronous queue
(serving/queue.py, so every guarantee of that pattern holds). The final answer comes by polling
GET /jobs/{id} or pushed by GET /jobs/{id}/events, and says whether it `revised` the fast one.

Both dependencies are soft, so neither flips /readyz:
- fast fails or times out  -> 202 {"job_id", "fast": null, "final_url"};
- Redis is down            -> 200 {"job_id": null, "fast": {...}, "final": "unavailable"};
- both                     -> 503.

    python -m patterns.sync_async.proxy
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import Field

from serving import http
from serving.app import ERRORS, json_response, request_id
from serving.errors import Unavailable
from serving.jobs import JobSettings, job_api, read_job_input
from serving.queue import JobQueue
from serving.redis_client import OUTAGE
from serving.state import ServiceState

log = logging.getLogger("sync_async")

PATTERN = "sync_async"


class ProxySettings(JobSettings):
    fast_url: str = "http://127.0.0.1:8001"
    fast_timeout_seconds: float = Field(0.5, gt=0, le=5)
    """Read budget for the fast model; past it the client gets fast:null and the ticket."""


def build(settings: ProxySettings) -> FastAPI:
    fast_client = http.make_client(settings.fast_url, read=settings.fast_timeout_seconds)

    async def ask_fast(payload: dict[str, bytes | str], rid: str | None) -> dict[str, Any] | None:
        image = payload["kind"] == "image"
        try:
            resp = await http.request(
                fast_client,
                "POST",
                "/predict/image" if image else "/predict",
                request_id=rid,
                idempotent=True,  # a prediction has no side effect
                content=payload["input"],
                headers={"Content-Type": "image/png" if image else "application/json"},
            )
        except httpx.HTTPError as exc:
            log.warning("fast model unavailable", extra={"error": type(exc).__name__})
            return None
        if resp.status_code != 200:
            log.warning("fast model failed", extra={"status": resp.status_code})
            return None
        body: dict[str, Any] = resp.json()
        body.pop("request_id", None)
        return body

    def routes(app: FastAPI, state: ServiceState, queue: JobQueue) -> None:
        async def handle(request: Request) -> Response:
            payload = await read_job_input(request, settings)
            rid = request_id(request)
            fast = await ask_fast(payload, rid)
            if fast is not None:
                labels = [p["label"] for p in fast["predictions"]]
                payload["fast"] = orjson.dumps(labels)
            try:
                job_id, _ = await queue.submit(payload)
            except (*OUTAGE, OSError) as exc:
                if fast is None:
                    raise Unavailable(
                        "neither the fast model nor the queue is available",
                        dependency="fast,redis",
                    ) from exc
                return json_response({"job_id": None, "fast": fast, "final": "unavailable"})
            except Unavailable:  # queue_full: the fast answer still goes out
                if fast is None:
                    raise
                return json_response({"job_id": None, "fast": fast, "final": "unavailable"})
            url = f"/jobs/{job_id}"
            body = {"job_id": job_id, "fast": fast, "final_url": url, "events_url": f"{url}/events"}
            return json_response(body, 200 if fast is not None else 202, {"Location": url})

        summary = "The fast answer now, a ticket for the heavy model's answer"
        for path in ("/predict", "/predict/image"):
            app.add_api_route(
                path, handle, methods=["POST"], tags=["predict"], summary=summary, responses=ERRORS
            )

    app, _ = job_api(settings, PATTERN, extra=routes, submit_route=False, redis_is_hard=False)
    return app


if __name__ == "__main__":
    from serving.server import serve

    os.environ.setdefault("MLSP_PATTERN", PATTERN)
    proxy_settings = ProxySettings()
    sys.exit(serve(build(proxy_settings), proxy_settings))
