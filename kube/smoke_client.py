"""The client of the container tier's smoke checks: one exchange with a pattern's Service.

kube/play.py runs this file in a container on the pods' network, by passing its source to the
image's Python (`python -c SOURCE MODE URL ARG...`: no image needs to contain it, and it also
runs inside a pod already playing, with `podman exec`). It prints one JSON object; the caller
judges it with the judge the pattern declares (`patterns/<id>/pattern.py`, `smoke=`).
Standard library only, but for the `images` mode, which draws PNGs with Pillow (the serving
image has it).

    ready URL PATH SECONDS      GET PATH until 200, else exit 1 after SECONDS
    predict URL ROWS            POST /predict: the labels the model gives
    job URL ROWS SECONDS        POST /jobs: 202 and a ticket, polled until not pending
    sync_async URL ROWS SECONDS POST /predict: the fast answer, then the final one by polling
    images URL ROWS             POST /predict/image: each row (an 8x8 digit) as a 64x64 PNG
    requests URL STEPS          POST each {path, json, expect} in order: status, X-Cache, labels
    get URL PATH [EXPECTED]     GET PATH (30 s timeout); EXPECTED is echoed for the judge
    post URL PATH JSON [EXPECTED]  POST the JSON body to PATH (30 s timeout), like get
    reach HOST PORT             what HOST resolves to and whether each address connects

ROWS is a model card's path (its golden examples, as the model answered them at build time)
or JSON `{"instances": [...], "labels": [...]}`; the answer echoes the labels as `expected`.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from typing import Any

Answer = dict[str, Any]


def exchange(
    method: str,
    url: str,
    body: bytes | None = None,
    timeout: float = 5.0,
    media: str = "application/json",
) -> tuple[int, bytes, Message]:
    headers = {"content-type": media} if body is not None else {}
    # the URL is http://<Service>:<port> on the pods' network, given by kube/play.py
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return int(response.status), bytes(response.read()), response.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers


def call(
    method: str, url: str, body: bytes | None = None, timeout: float = 5.0
) -> tuple[int, bytes]:
    status, raw, _ = exchange(method, url, body, timeout)
    return status, raw


def body_of(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:300]


def labels_of(answer: Any) -> list[Any] | None:
    preds = answer.get("predictions") if isinstance(answer, dict) else None
    return [p.get("label") for p in preds] if isinstance(preds, list) and preds else None


def rows(arg: str) -> tuple[list[Any], list[Any]]:
    """(instances, labels): a model card's golden examples, or JSON."""
    if arg.endswith(".json"):
        with open(arg) as f:
            golden = json.load(f)["golden"]
        return [g["input"] for g in golden], [g["label"] for g in golden]
    spec = json.loads(arg)
    return spec["instances"], spec["labels"]


def instances_body(instances: list[Any]) -> bytes:
    return json.dumps({"instances": instances}).encode()


def png(values: list[float], side: int) -> bytes:
    """An 8x8 digit (0..16) drawn as data_cache's seed draws it, scaled up to side x side."""
    from PIL import Image

    img = Image.new("L", (8, 8))
    img.putdata([round(v * 255 / 16) for v in values])
    buf = io.BytesIO()
    img.resize((side, side), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()


def poll(url: str, seconds: float) -> tuple[int, Any]:
    """GET a job until it is no longer pending (or `seconds` have passed)."""
    deadline = time.time() + seconds
    while True:
        status, raw = call("GET", url)
        job = body_of(raw)
        pending = status == 200 and isinstance(job, dict) and job.get("status") == "pending"
        if not pending or time.time() > deadline:
            return status, job
        time.sleep(0.2)


def ready(base: str, args: list[str]) -> Answer:
    path, seconds = args[0], float(args[1])
    deadline, err = time.time() + seconds, ""
    while True:
        try:
            status, raw = call("GET", base + path, timeout=2)
            if status == 200:
                return {"ready": True}
            err = f"{status} {raw[:200]!r}"
        except Exception as e:  # not up yet: refused, reset, timed out, unknown name
            err = repr(e)
        if time.time() > deadline:
            sys.exit(f"{base}{path} not ready after {args[1]} s: {err}")
        time.sleep(0.5)


def predict(base: str, args: list[str]) -> Answer:
    instances, labels = rows(args[0])
    status, raw = call("POST", base + "/predict", instances_body(instances))
    return {"status": status, "body": body_of(raw), "expected": labels}


def job(base: str, args: list[str]) -> Answer:
    instances, labels = rows(args[0])
    status, raw = call("POST", base + "/jobs", instances_body(instances))
    ticket = body_of(raw)
    out: Answer = {"status": status, "ticket": ticket, "expected": labels}
    if status == 202 and isinstance(ticket, dict):
        out["final_status"], out["final"] = poll(base + ticket["status_url"], float(args[1]))
    return out


def sync_async(base: str, args: list[str]) -> Answer:
    instances, labels = rows(args[0])
    started = time.time()
    status, raw = call("POST", base + "/predict", instances_body(instances))
    answer = body_of(raw)
    out: Answer = {
        "status": status,
        "answer": answer,
        "expected": labels,
        "fast_ms": round((time.time() - started) * 1000),
    }
    if status == 200 and isinstance(answer, dict) and answer.get("final_url"):
        out["final_status"], out["final"] = poll(base + answer["final_url"], float(args[1]))
    return out


def images(base: str, args: list[str]) -> Answer:
    instances, labels = rows(args[0])
    answers = []
    for values in instances:
        body = png(values, 64)
        status, raw, _ = exchange("POST", base + "/predict/image", body, 10, "image/png")
        found = labels_of(body_of(raw))
        answers.append({"status": status, "label": found[0] if found else None})
    return {"answers": answers, "expected": labels}


def requests(base: str, args: list[str]) -> Answer:
    answers = []
    for step in json.loads(args[0]):
        body = json.dumps(step["json"]).encode()
        status, raw, headers = exchange("POST", base + step["path"], body)
        answers.append(
            {
                "status": status,
                "x_cache": headers.get("x-cache"),
                "labels": labels_of(body_of(raw)),
                "sent": step["json"],
                "expect": step.get("expect"),
            }
        )
    return {"answers": answers}


def get(base: str, args: list[str]) -> Answer:
    started = time.time()
    status, raw = call("GET", base + args[0], timeout=30)
    out: Answer = {"status": status, "body": body_of(raw)}
    out["ms"] = round((time.time() - started) * 1000)
    if len(args) > 1:
        out["expected"] = args[1]
    return out


def post(base: str, args: list[str]) -> Answer:
    started = time.time()
    status, raw, _ = exchange("POST", base + args[0], args[1].encode(), timeout=30)
    out: Answer = {"status": status, "body": body_of(raw)}
    out["ms"] = round((time.time() - started) * 1000)
    if len(args) > 2:
        out["expected"] = args[2]
    return out


def reach(host: str, args: list[str]) -> Answer:
    port, seen = int(args[0]), []
    t = time.monotonic()
    try:
        addresses = sorted({str(a[4][0]) for a in socket.getaddrinfo(host, port)})
    except OSError as e:
        return {"reach": f"resolve {host}: {e!r} after {time.monotonic() - t:.2f} s"}
    seen.append(f"resolve {host} -> {addresses} in {time.monotonic() - t:.2f} s")
    for address in addresses:
        t = time.monotonic()
        try:
            socket.create_connection((address, port), timeout=2).close()
            seen.append(f"connect {address}: ok in {time.monotonic() - t:.2f} s")
        except OSError as e:
            seen.append(f"connect {address}: {e!r} after {time.monotonic() - t:.2f} s")
    return {"reach": "; ".join(seen)}


MODES: dict[str, Callable[[str, list[str]], Answer]] = {
    "ready": ready,
    "predict": predict,
    "job": job,
    "sync_async": sync_async,
    "images": images,
    "requests": requests,
    "get": get,
    "post": post,
    "reach": reach,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in MODES:
        sys.exit(f"usage: MODE URL ARG... with MODE one of {', '.join(MODES)}")
    print(json.dumps(MODES[argv[0]](argv[1], argv[2:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
