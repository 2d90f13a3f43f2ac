"""Open Inference Protocol v2 (REST) conformance: does a server speak the protocol?

    python -m serving.oip_conformance URL [--model NAME] [--data JSON]

Checks any OIP v2 server (ours, KServe, Triton, MLServer) against the protocol's REST schema:
health, server and model metadata, model readiness, the infer request and response (shapes,
datatypes and element counts, each output's matching the model's metadata and the rows sent,
the `id` echoed, requested outputs, versioned routes), and the error
contract: an unknown model, a malformed body and a bad tensor are a 4xx whose body is
`{"error": "<string>"}` (more fields beside it are allowed). One line per check; exit 0 when
every check passes, 1 when one fails, 2 when the server cannot be examined at all.

Without --model the model comes from the model repository extension (`POST
/v2/repository/index`) when the server has it. The input sent is the model's metadata filled
with --data (a flat list of values, repeated to fill the shape; default 1s), one row where a
dimension is variable.

In pytest, each check is a test case:

    from serving import oip_conformance

    @oip_conformance.each_check
    def test_speaks_oip(oip_check: oip_conformance.Check) -> None:
        oip_check.verify("http://127.0.0.1:8000", "iris-svc")

or, loaded as a plugin (`-p serving.oip_conformance`), any test taking an `oip_check`
argument is parametrised with every check.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

DATATYPES = {
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
}
"""The protocol's tensor datatypes."""
MAX_ELEMENTS = 1_000_000
"""The most values the suite builds for one input tensor from the model's metadata."""


class Failure(Exception):
    """A check's finding: what the server did, against what the protocol says."""


@dataclass
class Probe:
    """A server under examination: its URL, its model, and what was learnt so far."""

    client: httpx.Client
    model: str
    data: list[Any] | None = None
    _metadata: dict[str, Any] | None = field(default=None, repr=False)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(path)

    def post(self, path: str, body: Any = None, *, content: bytes | None = None) -> httpx.Response:
        if content is not None:
            headers = {"Content-Type": "application/json"}
            return self.client.post(path, content=content, headers=headers)
        return self.client.post(path, json=body)

    def metadata(self) -> dict[str, Any]:
        """The model's metadata (checked by `model-metadata`; needed by the infer checks)."""
        if self._metadata is None:
            resp = self.get(f"/v2/models/{self.model}")
            expect_status(resp, 200, "model metadata")
            self._metadata = expect_object(resp)
        return self._metadata

    def version(self) -> str | None:
        versions = self.metadata().get("versions")
        return str(versions[0]) if isinstance(versions, list) and versions else None

    def request(self, **extra: Any) -> dict[str, Any]:
        """An infer request for the model's inputs, filled with the probe's data."""
        inputs = []
        for tensor in self.metadata()["inputs"]:
            shape = [1 if d is None or d < 0 else int(d) for d in tensor["shape"]]
            n = math.prod(shape)
            if n > MAX_ELEMENTS:
                raise Failure(
                    f"input {tensor['name']!r} of shape {tensor['shape']} holds {n} values, "
                    f"more than the {MAX_ELEMENTS} this suite sends"
                )
            fill = self.data or [_one(tensor["datatype"])]
            values = [fill[i % len(fill)] for i in range(n)]
            inputs.append(
                {"name": tensor["name"], "shape": shape, "datatype": tensor["datatype"],
                 "data": values}
            )  # fmt: skip
        return {"inputs": inputs, **extra}

    def infer_path(self, version: str | None = None) -> str:
        base = f"/v2/models/{self.model}"
        return f"{base}/versions/{version}/infer" if version else f"{base}/infer"


def _one(datatype: str) -> Any:
    if datatype == "BOOL":
        return True
    if datatype == "BYTES":
        return "a"
    return 1.0 if datatype.startswith("FP") else 1


# --- what the protocol says, as assertions ------------------------------------------------


def expect_status(resp: httpx.Response, status: int, what: str) -> None:
    if resp.status_code != status:
        raise Failure(f"{what}: HTTP {resp.status_code}, expected {status}: {_snippet(resp)}")


def expect_object(resp: httpx.Response) -> dict[str, Any]:
    try:
        body = resp.json()
    except ValueError as exc:
        raise Failure(f"the body is not JSON: {_snippet(resp)}") from exc
    if not isinstance(body, dict):
        raise Failure(f"the body is not a JSON object: {_snippet(resp)}")
    return body


def expect_error(resp: httpx.Response, what: str) -> None:
    """A 4xx whose body is `{"error": "<string>"}` (other fields beside it are allowed)."""
    if not 400 <= resp.status_code < 500:
        raise Failure(f"{what}: HTTP {resp.status_code}, expected a 4xx: {_snippet(resp)}")
    body = expect_object(resp)
    if not isinstance(body.get("error"), str) or not body["error"]:
        raise Failure(f'{what}: the error body is {_snippet(resp)}, not {{"error": "<string>"}}')


def _snippet(resp: httpx.Response, limit: int = 160) -> str:
    text = resp.text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def check_tensor_metadata(where: str, tensor: Any) -> None:
    """`{"name": str, "datatype": one of DATATYPES, "shape": [int]}` (-1: variable)."""
    if not isinstance(tensor, dict):
        raise Failure(f"{where} is not an object: {tensor!r}")
    if not isinstance(tensor.get("name"), str):
        raise Failure(f"{where}.name is not a string: {tensor.get('name')!r}")
    if tensor.get("datatype") not in DATATYPES:
        raise Failure(f"{where}.datatype {tensor.get('datatype')!r} is no protocol datatype")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= -1 for d in shape):
        raise Failure(f"{where}.shape {shape!r} is not a list of dimensions (-1: variable)")


def _flatten(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _fits(datatype: str, value: Any) -> bool:
    if datatype == "BOOL":
        return isinstance(value, bool)
    if datatype == "BYTES":
        return isinstance(value, str)
    if isinstance(value, bool):
        return False
    if datatype.startswith("FP"):
        return isinstance(value, int | float)
    return isinstance(value, int) and (not datatype.startswith("UINT") or value >= 0)


def check_output(where: str, out: Any) -> None:
    """An output tensor: name, datatype, shape, and data holding prod(shape) values of that
    datatype (flat or nested, row-major)."""
    check_tensor_metadata(where, out)
    if any(d < 0 for d in out["shape"]):
        raise Failure(f"{where}.shape {out['shape']} has a variable dimension in a response")
    if "data" not in out:
        raise Failure(f"{where} has no data")
    values = list(_flatten(out["data"]))
    if len(values) != math.prod(out["shape"]):
        raise Failure(
            f"{where}: shape {out['shape']} holds {math.prod(out['shape'])} values, "
            f"data has {len(values)}"
        )
    bad = next((v for v in values if not _fits(out["datatype"], v)), None)
    if bad is not None:
        raise Failure(f"{where}: {bad!r} is no {out['datatype']} value")


def check_declared(where: str, out: dict[str, Any], declared: dict[str, Any], rows: int) -> None:
    """An output against the model's metadata: its datatype, its shape (-1: any size), and a
    variable first dimension holding as many rows as were sent."""
    if out["datatype"] != declared.get("datatype"):
        raise Failure(
            f"{where}.datatype is {out['datatype']}, the model's metadata says "
            f"{declared.get('datatype')}"
        )
    shape, meta = out["shape"], declared.get("shape")
    if (
        not isinstance(meta, list)
        or len(shape) != len(meta)
        or any(m != -1 and d != m for d, m in zip(shape, meta, strict=True))
    ):
        raise Failure(f"{where}.shape {shape} does not fit the model's metadata {meta}")
    if meta and meta[0] == -1 and shape[0] != rows:
        raise Failure(f"{where}.shape {shape} has {shape[0]} rows, the request sent {rows}")


def check_response(
    probe: Probe, resp: httpx.Response, request_id: str | None, sent: dict[str, Any]
) -> dict[str, Any]:
    expect_status(resp, 200, "infer")
    body = expect_object(resp)
    if body.get("model_name") != probe.model:
        raise Failure(f"model_name is {body.get('model_name')!r}, expected {probe.model!r}")
    if "model_version" in body and not isinstance(body["model_version"], str):
        raise Failure(f"model_version is {body['model_version']!r}, not a string")
    if request_id is not None and body.get("id") != request_id:
        raise Failure(f"id is {body.get('id')!r}; the request's id {request_id!r} is not echoed")
    outputs = body.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        raise Failure(f"outputs is {outputs!r}, not a non-empty list")
    declared = {t["name"]: t for t in probe.metadata()["outputs"]}
    sent_shape = sent["inputs"][0]["shape"]
    rows = sent_shape[0] if sent_shape else 1
    for i, out in enumerate(outputs):
        check_output(f"outputs[{i}]", out)
        if out["name"] not in declared:
            raise Failure(f"outputs[{i}].name {out['name']!r} is not in the model's metadata")
        check_declared(f"outputs[{i}]", out, declared[out["name"]], rows)
    return body


# --- the checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    """Short id (a test id in pytest)."""
    what: str
    """What the protocol requires, in one line."""
    run: Callable[[Probe], str | None]
    """Raises Failure; may return a note (what was seen, or why it did not apply)."""

    def verify(
        self, url: str, model: str | None = None, *, data: list[Any] | None = None
    ) -> str | None:
        """Run this check alone against `url`; AssertionError with the finding if it fails."""
        result = run([self], url, model, data=data)[0]
        if not result.ok:
            raise AssertionError(f"OIP {self.name}: {self.what}: {result.detail}")
        return result.detail


CHECKS: list[Check] = []
C = TypeVar("C", bound=Callable[[Probe], str | None])


def check(name: str, what: str) -> Callable[[C], C]:
    def register(fn: C) -> C:
        CHECKS.append(Check(name, what, fn))
        return fn

    return register


@check("server-live", "GET /v2/health/live is 200 (a body, if any, says live: true)")
def _server_live(p: Probe) -> None:
    resp = p.get("/v2/health/live")
    expect_status(resp, 200, "server live")
    if resp.content and expect_object(resp).get("live", True) is not True:
        raise Failure(f"the body says {resp.text}")


@check("server-ready", "GET /v2/health/ready is 200 (a body, if any, says ready: true)")
def _server_ready(p: Probe) -> None:
    resp = p.get("/v2/health/ready")
    expect_status(resp, 200, "server ready")
    if resp.content and expect_object(resp).get("ready", True) is not True:
        raise Failure(f"the body says {resp.text}")


@check("server-metadata", "GET /v2 gives name, version (strings) and extensions (strings)")
def _server_metadata(p: Probe) -> str:
    resp = p.get("/v2")
    expect_status(resp, 200, "server metadata")
    body = expect_object(resp)
    for key in ("name", "version"):
        if not isinstance(body.get(key), str):
            raise Failure(f"{key} is {body.get(key)!r}, not a string")
    if not _strings(body.get("extensions")):
        raise Failure(f"extensions is {body.get('extensions')!r}, not a list of strings")
    return f"{body['name']} {body['version']}"


@check("model-ready", "GET /v2/models/{model}/ready is 200")
def _model_ready(p: Probe) -> None:
    resp = p.get(f"/v2/models/{p.model}/ready")
    expect_status(resp, 200, "model ready")
    if resp.content and expect_object(resp).get("ready", True) is not True:
        raise Failure(f"the body says {resp.text}")


@check(
    "model-metadata",
    "GET /v2/models/{model} gives name, versions?, platform, inputs and outputs "
    "({name, datatype, shape})",
)
def _model_metadata(p: Probe) -> str:
    meta = p.metadata()
    if meta.get("name") != p.model:
        raise Failure(f"name is {meta.get('name')!r}, expected {p.model!r}")
    if "versions" in meta and not _strings(meta["versions"]):
        raise Failure(f"versions is {meta['versions']!r}, not a list of strings")
    if not isinstance(meta.get("platform"), str):
        raise Failure(f"platform is {meta.get('platform')!r}, not a string")
    for key in ("inputs", "outputs"):
        tensors = meta.get(key)
        if not isinstance(tensors, list) or not tensors:
            raise Failure(f"{key} is {tensors!r}, not a non-empty list")
        for i, tensor in enumerate(tensors):
            check_tensor_metadata(f"{key}[{i}]", tensor)
    return f"{len(meta['inputs'])} input(s), {len(meta['outputs'])} output(s)"


@check("model-version-metadata", "GET /v2/models/{model}/versions/{v} answers for a listed v")
def _model_version_metadata(p: Probe) -> str:
    version = p.version()
    if version is None:
        return "no versions listed: not applicable"
    resp = p.get(f"/v2/models/{p.model}/versions/{version}")
    expect_status(resp, 200, f"metadata of version {version}")
    if expect_object(resp).get("name") != p.model:
        raise Failure(f"name is {resp.json().get('name')!r}, expected {p.model!r}")
    return f"version {version}"


@check(
    "infer",
    "POST /v2/models/{model}/infer gives model_name and outputs whose data fit their "
    "shape and datatype",
)
def _infer(p: Probe) -> str:
    request = p.request()
    body = check_response(p, p.post(p.infer_path(), request), None, request)
    return ", ".join(f"{o['name']} {o['datatype']}{o['shape']}" for o in body["outputs"])


@check("infer-id", "the request's id is echoed as the response's id")
def _infer_id(p: Probe) -> None:
    rid = f"oip-conformance-{uuid.uuid4()}"
    request = p.request(id=rid)
    check_response(p, p.post(p.infer_path(), request), rid, request)


@check("infer-requested-output", "outputs: [{name}] in the request returns that output only")
def _infer_requested_output(p: Probe) -> str:
    wanted = str(p.metadata()["outputs"][-1]["name"])
    request = p.request(outputs=[{"name": wanted}])
    body = check_response(p, p.post(p.infer_path(), request), None, request)
    names = [o["name"] for o in body["outputs"]]
    if names != [wanted]:
        raise Failure(f"asked for [{wanted!r}], got {names}")
    return wanted


@check("infer-version", "POST /v2/models/{model}/versions/{v}/infer answers for a listed v")
def _infer_version(p: Probe) -> str:
    version = p.version()
    if version is None:
        return "no versions listed: not applicable"
    request = p.request()
    body = check_response(p, p.post(p.infer_path(version), request), None, request)
    if "model_version" in body and body["model_version"] != version:
        raise Failure(f"model_version is {body['model_version']!r}, asked for {version!r}")
    return f"version {version}"


def _unknown_model() -> str:
    return f"no-such-model-{uuid.uuid4().hex[:8]}"


@check("error-unknown-model-metadata", 'metadata of an unknown model: 4xx, {"error": "..."}')
def _error_unknown_model_metadata(p: Probe) -> None:
    expect_error(p.get(f"/v2/models/{_unknown_model()}"), "unknown model")


@check("error-unknown-model-infer", 'infer on an unknown model: 4xx, {"error": "..."}')
def _error_unknown_model_infer(p: Probe) -> None:
    resp = p.post(f"/v2/models/{_unknown_model()}/infer", p.request())
    expect_error(resp, "unknown model")


@check("error-malformed-json", 'infer with a body that is not JSON: 4xx, {"error": "..."}')
def _error_malformed(p: Probe) -> None:
    expect_error(p.post(p.infer_path(), content=b'{"inputs": [ '), "malformed body")


@check("error-no-inputs", 'infer without inputs: 4xx, {"error": "..."}')
def _error_no_inputs(p: Probe) -> None:
    expect_error(p.post(p.infer_path(), {"id": "x"}), "no inputs")


@check("error-shape-mismatch", 'data that does not fill the shape: 4xx, {"error": "..."}')
def _error_shape(p: Probe) -> None:
    request = p.request()
    tensor = request["inputs"][0]
    tensor["shape"] = [2 * tensor["shape"][0], *tensor["shape"][1:]]
    expect_error(p.post(p.infer_path(), request), "data short of its shape")


@check("error-bad-datatype", 'an unknown datatype: 4xx, {"error": "..."}')
def _error_datatype(p: Probe) -> None:
    request = p.request()
    request["inputs"][0]["datatype"] = "FP99"
    expect_error(p.post(p.infer_path(), request), "datatype FP99")


# --- running them -------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    check: Check
    ok: bool
    detail: str | None


def discover_model(client: httpx.Client) -> str:
    """The only (or first ready) model of the repository extension's index."""
    try:
        resp = client.post("/v2/repository/index", json={})
    except httpx.HTTPError as exc:
        raise Failure(f"cannot reach the server: {exc}") from exc
    try:
        index = resp.json() if resp.status_code == 200 else None
    except ValueError:
        index = None
    if not isinstance(index, list) or not index:
        raise Failure("the server lists no models (no repository extension): pass --model")
    models = [m for m in index if isinstance(m, dict) and isinstance(m.get("name"), str)]
    ready = [m for m in models if m.get("state", "READY") == "READY"] or models
    if not ready:
        raise Failure("the repository index names no model: pass --model")
    return str(ready[0]["name"])


def run(
    checks: list[Check],
    url: str,
    model: str | None = None,
    *,
    data: list[Any] | None = None,
    timeout: float = 5.0,
) -> list[Result]:
    """Run `checks` against the server at `url`, in order; one Result each."""
    with httpx.Client(base_url=url.rstrip("/"), timeout=httpx.Timeout(timeout, connect=2.0)) as c:
        name = model or discover_model(c)
        probe = Probe(c, name, data)
        results = []
        for chk in checks:
            try:
                results.append(Result(chk, True, chk.run(probe)))
            except Failure as exc:
                results.append(Result(chk, False, str(exc)))
            except (
                httpx.HTTPError,
                KeyError,
                IndexError,
                TypeError,
                ValueError,
                RecursionError,
            ) as exc:
                results.append(Result(chk, False, f"{type(exc).__name__}: {exc}"))
        return results


def report(results: list[Result]) -> str:
    width = max(len(r.check.name) for r in results)
    lines = []
    for r in results:
        line = f"{'PASS' if r.ok else 'FAIL'}  {r.check.name:<{width}}  {r.check.what}"
        if r.detail:
            line += f"\n      {' ' * width}  {'->' if r.ok else '!!'} {r.detail}"
        lines.append(line)
    failed = sum(not r.ok for r in results)
    lines.append(f"{len(results) - failed}/{len(results)} checks pass")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.oip_conformance",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument("url", help="the server's base URL, e.g. http://127.0.0.1:8000")
    parser.add_argument("--model", help="the model to examine (default: from the repository)")
    parser.add_argument("--data", help="input values, a JSON list (default: 1s)")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    args = parser.parse_args(argv)
    data = None
    if args.data is not None:
        try:
            data = json.loads(args.data)
        except ValueError:
            parser.error("--data must be a non-empty JSON list")
        if not isinstance(data, list) or not data:
            parser.error("--data must be a non-empty JSON list")
    try:
        results = run(CHECKS, args.url, args.model, data=data, timeout=args.timeout)
    except Failure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report(results))
    return 0 if all(r.ok for r in results) else 1


# --- pytest -------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., Any])


def each_check(test: F) -> F:
    """Parametrise a test's `oip_check` argument with every check (test ids: check names)."""
    import pytest

    ids = [c.name for c in CHECKS]
    marked: F = pytest.mark.parametrize("oip_check", CHECKS, ids=ids)(test)
    return marked


def pytest_generate_tests(metafunc: Any) -> None:
    """As a plugin (`-p serving.oip_conformance`): every test taking `oip_check` runs once per
    check, unless it parametrises the argument itself."""
    if "oip_check" not in metafunc.fixturenames:
        return
    marks = metafunc.definition.iter_markers("parametrize")
    if any("oip_check" in str(m.args[0]) for m in marks):
        return
    metafunc.parametrize("oip_check", CHECKS, ids=[c.name for c in CHECKS])


if __name__ == "__main__":
    sys.exit(main())
