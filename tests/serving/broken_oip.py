"""A small Open Inference Protocol v2 server with a fault chosen on its command line, for the
conformance suite's tests: `none` is a correct server (not ours: the suite must not be tuned to
our own), the others break one rule of the protocol.

    python -m tests.serving.broken_oip PORT FAULT
"""

from __future__ import annotations

import json
import sys
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

FAULTS = (
    "none",
    "error-body",
    "output-shape",
    "no-id-echo",
    "output-datatype",  # FP64 outputs, the metadata says FP32
    "output-rows",  # one row more than was sent (its data fits its shape)
    "no-outputs",  # the metadata lists no outputs; the repository index is not JSON
)
MODEL = "doubler"


def parse(raw: bytes) -> tuple[Any, str | None]:
    """The request, and what is wrong with it (None: nothing)."""
    try:
        body: Any = json.loads(raw)
        tensor = body["inputs"][0]
        shape, data = tensor["shape"], tensor["data"]
        if tensor["datatype"] != "FP32" or len(shape) != 2 or shape[1] != 2:
            return body, "x takes FP32 [n, 2]"
        if len(data) != shape[0] * 2:
            return body, "data does not fill the shape"
    except (ValueError, KeyError, IndexError, TypeError):
        return None, "malformed request"
    return body, None


METADATA = {
    "name": MODEL,
    "versions": ["1"],
    "platform": "python",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
}


class Server:
    def __init__(self, fault: str) -> None:
        self.fault = fault

    def error(self, message: str, status: int = 400) -> Response:
        if self.fault == "error-body":  # FastAPI's default shape, not the protocol's
            return JSONResponse({"detail": message}, status)
        return JSONResponse({"error": message}, status)

    async def live(self, _: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(self, _: Request) -> Response:
        return JSONResponse({"ready": True})

    async def server(self, _: Request) -> Response:
        return JSONResponse({"name": "doubler-server", "version": "1", "extensions": []})

    async def model(self, request: Request) -> Response:
        if request.path_params["name"] != MODEL:
            return self.error("unknown model", 404)
        if self.fault == "no-outputs":
            return JSONResponse({**METADATA, "outputs": []})
        return JSONResponse(METADATA)

    async def index(self, _: Request) -> Response:
        if self.fault == "no-outputs":
            return Response("models: doubler", media_type="text/plain")
        return self.error("no repository extension", 404)

    async def model_ready(self, request: Request) -> Response:
        if request.path_params["name"] != MODEL:
            return self.error("unknown model", 404)
        return JSONResponse({"name": MODEL, "ready": True})

    async def infer(self, request: Request) -> Response:
        if request.path_params["name"] != MODEL or request.path_params.get("v", "1") != "1":
            return self.error("unknown model", 404)
        body, problem = parse(await request.body())
        if problem:
            return self.error(problem)
        shape, data = body["inputs"][0]["shape"], body["inputs"][0]["data"]
        out_shape = [shape[0], 3] if self.fault == "output-shape" else shape
        values = [2 * v for v in data]
        if self.fault == "output-rows":
            out_shape, values = [shape[0] + 1, shape[1]], [*values, 0.0, 0.0]
        datatype = "FP64" if self.fault == "output-datatype" else "FP32"
        out = {"name": "y", "datatype": datatype, "shape": out_shape, "data": values}
        answer: dict[str, Any] = {"model_name": MODEL, "model_version": "1", "outputs": [out]}
        if "id" in body and self.fault != "no-id-echo":
            answer["id"] = body["id"]
        return JSONResponse(answer)


def make_app(fault: str) -> Starlette:
    s = Server(fault)
    return Starlette(
        routes=[
            Route("/v2", s.server),
            Route("/v2/health/live", s.live),
            Route("/v2/health/ready", s.ready),
            Route("/v2/models/{name}", s.model),
            Route("/v2/models/{name}/versions/{v}", s.model),
            Route("/v2/models/{name}/ready", s.model_ready),
            Route("/v2/models/{name}/infer", s.infer, methods=["POST"]),
            Route("/v2/models/{name}/versions/{v}/infer", s.infer, methods=["POST"]),
            Route("/v2/repository/index", s.index, methods=["POST"]),
        ]
    )


if __name__ == "__main__":
    port, fault = int(sys.argv[1]), sys.argv[2]
    assert fault in FAULTS, f"fault must be one of {FAULTS}"
    uvicorn.run(make_app(fault), host="127.0.0.1", port=port, log_level="warning")
