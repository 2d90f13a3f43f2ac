"""synchronous, the client: an inspection line that blocks on the model for every item.

Each item (a digit image rendered from the model card's reference sample) is sent to
POST /predict/image with a 5 s budget (the book's default), propagated to the server as
X-Request-Deadline-Ms. The line then routes it:

- `ship`     the model answered and is confident (top probability >= MLSP_SHIP_THRESHOLD);
- `recheck`  anything else: low confidence, a timeout, a 5xx, an unreachable server.

It never ships on a failure (fail-safe) and retries only a connection error, once: a request
that reached the server may have used the budget already. One JSON line per item, a summary
at the end; the exit code is 0 when every item was routed.

    MLSP_SERVER_URL=http://127.0.0.1:8000 python -m patterns.synchronous.client
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image
from pydantic import Field

from serving.admission import deadline_header
from serving.model import read_card
from serving.settings import ModelDirSettings

ANSWER_GRACE = 0.25
"""Seconds the client's socket waits past the deadline it sent, for the server's 504."""


class ClientSettings(ModelDirSettings):
    """The client Job: the line that sends each item to the server and routes the answer."""

    server_url: str = "http://127.0.0.1:8000"
    """The model server the line calls."""
    items: int = Field(200, ge=1, le=100_000)
    """Items the line sends, one at a time."""
    timeout_seconds: float = Field(5.0, gt=0)
    """Budget per item (book default 5 s), sent as the request's deadline."""
    connect_retries: int = Field(1, ge=0, le=3)
    """Retries of an item whose connection failed (never of one that timed out)."""
    ship_threshold: float = Field(0.9, gt=0, le=1)
    """Confidence from which an item ships; below it, or without an answer, it is rechecked."""
    wait_ready_seconds: float = Field(60.0, ge=0)
    """Before the line starts: how long to wait for the server's /readyz (a Job may start
    before its server)."""
    model_dir: Path = Path("data/models/digits-lr")
    """Where the reference sample of items comes from (the card, not the ONNX file)."""


def render(features: list[float]) -> bytes:
    """An 8x8 digit (values 0..16) as a 64x64 PNG, the way a camera frame would arrive."""
    pixels = (np.asarray(features, dtype=np.float32).reshape(8, 8) * 255 / 16).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).resize((64, 64), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def inspect(client: httpx.Client, s: ClientSettings, image: bytes) -> dict[str, Any]:
    """Route one item: never `ship` unless the model answered confidently in time."""
    started = time.perf_counter()
    headers = {"Content-Type": "image/png", **deadline_header(s.timeout_seconds)}
    attempt = 0
    while True:
        try:
            resp = client.post("/predict/image", content=image, headers=headers)
            break
        except httpx.ConnectError as exc:
            if attempt >= s.connect_retries:
                return {"route": "recheck", "reason": f"unreachable: {type(exc).__name__}"}
            attempt += 1
            time.sleep(0.1)
        except httpx.TimeoutException:
            return {"route": "recheck", "reason": "timeout"}
    elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
    if resp.status_code != 200:
        return {"route": "recheck", "reason": f"http {resp.status_code}", "latency_ms": elapsed_ms}
    pred = resp.json()["predictions"][0]
    confidence = max(pred["probabilities"].values())
    route = "ship" if confidence >= s.ship_threshold else "recheck"
    return {
        "route": route,
        "label": pred["label"],
        "confidence": round(confidence, 4),
        "latency_ms": elapsed_ms,
        **({} if route == "ship" else {"reason": "low confidence"}),
    }


def wait_ready(client: httpx.Client, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    # not ready: run anyway, every item then goes to recheck (the line never stops shipping
    # because of us, and never ships unchecked)
    print(json.dumps({"event": "server_not_ready", "waited_s": seconds}), flush=True)


def main() -> int:
    s = ClientSettings()
    sample = read_card(Path(s.model_dir)).reference["sample"]
    # the server answers a passed deadline with its own 504 (naming it); the socket waits a
    # little longer than the deadline to hear that answer rather than racing it (either way
    # the item goes to recheck)
    timeout = httpx.Timeout(s.timeout_seconds + ANSWER_GRACE, connect=min(0.5, s.timeout_seconds))
    counts: dict[str, int] = {"ship": 0, "recheck": 0}
    with httpx.Client(base_url=s.server_url, timeout=timeout) as client:
        wait_ready(client, s.wait_ready_seconds)
        for i in range(s.items):
            outcome = inspect(client, s, render(sample[i % len(sample)]))
            counts[outcome["route"]] += 1
            print(json.dumps({"event": "item", "item": i, **outcome}), flush=True)
    print(json.dumps({"event": "summary", "items": s.items, **counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
