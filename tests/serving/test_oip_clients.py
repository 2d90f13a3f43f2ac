"""Open Inference Protocol v2 against the public Triton client, in its default mode (binary
tensors in and out) and in JSON, single row and batch, on a real server process; the answers
must equal the shared API's /predict. Plus the protocol's edges found from outside: error
bodies the client can read, 4xx readiness, refused ragged or out-of-range tensors, a
self-consistent OpenAPI document, 405 with Allow, HEAD.

The KServe Python SDK cannot be installed beside this project's `kubernetes` client (their
python-dateutil pins conflict): it runs from its own environment, .venv-kserve (`make setup`),
through tests/clients/kserve_infer.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import spawn_server

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4], [5.9, 3.0, 4.2, 1.5]]


@pytest.fixture(scope="module")
def server(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = {"MLSP_MODEL_DIR": str(data_dir / "models" / "iris-svc"), "MLSP_ACCESS_LOG": "false"}
    log = tmp_path_factory.mktemp("oip") / "server.log"
    with spawn_server("patterns.web_single.app", env, log) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[triton.InferenceServerClient]:
    c = triton.InferenceServerClient(server.removeprefix("http://"))
    yield c
    c.close()


def predict(server: str, rows: list[list[float]]) -> list[dict[str, Any]]:
    resp = httpx.post(f"{server}/predict", json={"instances": rows})
    assert resp.status_code == 200, resp.text
    return resp.json()["predictions"]  # type: ignore[no-any-return]


def check_against_predict(server: str, result: Any, rows: list[list[float]]) -> None:
    plain = predict(server, rows)
    assert result.as_numpy("label").tolist() == [p["class_id"] for p in plain]
    expected = [list(p["probabilities"].values()) for p in plain]
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-6)


def x_input(rows: list[list[float]], *, binary: bool) -> triton.InferInput:
    tensor = triton.InferInput("X", [len(rows), 4], "FP32")
    tensor.set_data_from_numpy(np.asarray(rows, dtype=np.float32), binary_data=binary)
    return tensor


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS], ids=["one-row", "batch"])
def test_triton_client_defaults_binary_in_and_out(
    server: str, client: triton.InferenceServerClient, rows: list[list[float]]
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("iris-svc")
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata("iris-svc")
    assert meta["inputs"][0]["name"] == "X"
    result = client.infer("iris-svc", [x_input(rows, binary=True)])  # all defaults
    assert result.get_response()["outputs"][0]["parameters"]["binary_data_size"] == 8 * len(rows)
    check_against_predict(server, result, rows)


@pytest.mark.parametrize("rows", [ROWS[:1], ROWS], ids=["one-row", "batch"])
def test_triton_client_json_in_and_out(
    server: str, client: triton.InferenceServerClient, rows: list[list[float]]
) -> None:
    outputs = [
        triton.InferRequestedOutput(n, binary_data=False) for n in ("label", "probabilities")
    ]
    result = client.infer(
        "iris-svc", [x_input(rows, binary=False)], outputs=outputs, request_id="json-1"
    )
    response = result.get_response()
    assert response["id"] == "json-1" and "data" in response["outputs"][0]
    check_against_predict(server, result, rows)


def test_triton_client_mixed_binary_input_json_output(
    server: str, client: triton.InferenceServerClient
) -> None:
    outputs = [
        triton.InferRequestedOutput("probabilities", binary_data=True),
        triton.InferRequestedOutput("label", binary_data=False),
    ]
    result = client.infer("iris-svc", [x_input(ROWS, binary=True)], outputs=outputs)
    names = [o["name"] for o in result.get_response()["outputs"]]
    assert names == ["probabilities", "label"]  # in the order asked for
    check_against_predict(server, result, ROWS)


def test_triton_client_reads_our_errors(client: triton.InferenceServerClient) -> None:
    bad = triton.InferInput("Y", [1, 4], "FP32")
    bad.set_data_from_numpy(np.asarray(ROWS[:1], dtype=np.float32))
    with pytest.raises(InferenceServerException) as info:
        client.infer("iris-svc", [bad])
    assert info.value.status() == "422"
    assert "inputs[0].name" in info.value.message()
    with pytest.raises(InferenceServerException) as missing:
        client.get_model_metadata("no-such-model")
    assert missing.value.status() == "404" and "no-such-model" in missing.value.message()


def test_kserve_style_json_request(server: str) -> None:
    """A plain JSON request as most HTTP clients send it (flat data, no outputs named)."""
    req = {
        "id": "ks-1",
        "inputs": [
            {"name": "X", "shape": [3, 4], "datatype": "FP32", "data": [v for r in ROWS for v in r]}
        ],
    }
    resp = httpx.post(f"{server}/v2/models/iris-svc/infer", json=req)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    out = {o["name"]: o for o in resp.json()["outputs"]}
    assert out["label"]["data"] == [p["class_id"] for p in predict(server, ROWS)]


def infer_raw(server: str, body: bytes, header_length: int | None = None) -> httpx.Response:
    headers = (
        {} if header_length is None else {"Inference-Header-Content-Length": str(header_length)}
    )
    return httpx.post(f"{server}/v2/models/iris-svc/infer", content=body, headers=headers)


def test_binary_framing_errors_are_400_or_422_naming_the_field(server: str) -> None:
    head = json.dumps(
        {
            "inputs": [
                {
                    "name": "X",
                    "shape": [1, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    raw = np.asarray(ROWS[0], dtype="<f4").tobytes()
    ok = infer_raw(server, head + raw, len(head))
    assert ok.status_code == 200, ok.text
    cases = [
        (infer_raw(server, head + raw[:8], len(head)), 400, "binary_data_size"),
        (infer_raw(server, head + raw, len(head) + 999), 400, "Inference-Header-Content-Length"),
        (infer_raw(server, head + raw), 400, "body"),  # no header: not JSON
        (
            infer_raw(server, head.replace(b"16", b"12") + raw[:12], len(head)),
            422,
            "binary_data_size",
        ),
    ]
    for resp, status, field in cases:
        body = resp.json()
        assert resp.status_code == status, resp.text
        assert isinstance(body["error"], str) and field in body["field"], body


@pytest.mark.parametrize(
    ("tensor", "field", "words"),
    [
        (
            {"shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3], [4, 5, 6, 7, 8]]},
            "data",
            "ragged",
        ),
        (
            {"shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3, 4], 5, 6, 7, 8]},
            "data",
            "ragged",
        ),
        ({"shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 5e9]}, "data", "integer"),
        ({"shape": [1, 4], "datatype": "INT32", "data": [1, 2, 3, 5_000_000_000]}, "data", "range"),
        ({"shape": [1, 4], "datatype": "INT64", "data": [1, 2, 3, 5.1]}, "data", "integer"),
        ({"shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 1e39]}, "data", "float32"),
    ],
)
def test_refused_tensors(server: str, tensor: dict[str, Any], field: str, words: str) -> None:
    req = {"inputs": [{"name": "X", **tensor}]}
    resp = httpx.post(f"{server}/v2/models/iris-svc/infer", json=req)
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["field"].startswith(f"inputs[0].{field}") and words in body["error"], body


def test_duplicate_outputs_are_refused(server: str) -> None:
    tensor = {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}
    req = {"inputs": [tensor], "outputs": [{"name": "label"}, {"name": "label"}]}
    resp = httpx.post(f"{server}/v2/models/iris-svc/infer", json=req)
    assert resp.status_code == 422 and resp.json()["field"] == "outputs[1].name", resp.text


def test_openapi_refs_all_resolve(server: str) -> None:
    doc = httpx.get(f"{server}/openapi.json").json()
    schemas = doc["components"]["schemas"]
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("$ref"), str):
                refs.append(node["$ref"])
            assert "$defs" not in node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(doc)
    assert refs
    dangling = {r for r in refs if r.removeprefix("#/components/schemas/") not in schemas}
    assert not dangling
    ready = doc["paths"]["/v2/models/{name}/ready"]["get"]["responses"]
    assert {"200", "400", "404"} <= set(ready)


def test_405_names_the_allowed_methods_and_head_works(server: str) -> None:
    resp = httpx.delete(f"{server}/predict")
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert resp.json()["error"]["allow"] == ["POST"]
    wrong = httpx.post(f"{server}/readyz")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, HEAD"
    for path in ("/readyz", "/livez", "/metadata", "/v2/models/iris-svc"):
        get, head = httpx.get(f"{server}{path}"), httpx.head(f"{server}{path}")
        assert head.status_code == get.status_code == 200, path
        assert head.content == b"" and head.headers["content-length"] == str(len(get.content))


def test_head_sends_no_body_on_the_wire(server: str) -> None:
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"HEAD /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        data = b""
        while data.count(b"HTTP/1.1 200") < 2 or not data.endswith(b"}"):
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
    first, second = data.split(b"HTTP/1.1 200")[1:]
    assert first.endswith(b"\r\n\r\n") and second.endswith(b'{"live":true}')


def test_model_ready_is_4xx_while_the_model_is_not_loaded(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServingSettings

    settings = ServingSettings(model_dir=tmp_path, model_wait_seconds=60, access_log=False)
    with TestClient(create_app(settings)) as c:
        resp = c.get("/v2/models/iris-svc/ready")
        assert resp.status_code == 400 and resp.json() == {"name": "iris-svc", "ready": False}
        assert c.get("/v2/health/ready").status_code == 400
        infer = c.post("/v2/models/iris-svc/infer", json={"inputs": []})
        assert infer.status_code == 503 and isinstance(infer.json()["error"], str)


KSERVE = Path(__file__).parents[2] / ".venv-kserve" / "bin" / "python"


@pytest.mark.slow
def test_kserve_client_v2_defaults_binary_and_json(server: str) -> None:
    """The KServe SDK's InferenceRESTClient (v2; binary input tensors by default, then JSON),
    run from its own environment (`make setup` makes .venv-kserve)."""
    assert KSERVE.exists(), "no .venv-kserve: run `make setup`"
    script = Path(__file__).parents[1] / "clients" / "kserve_infer.py"
    done = subprocess.run(
        [str(KSERVE), str(script), server, "iris-svc", json.dumps(ROWS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    binary, plain, refused = (json.loads(line) for line in done.stdout.splitlines())
    expected = predict(server, ROWS)
    for answer in (binary, plain):
        assert answer["outputs"]["label"] == [p["class_id"] for p in expected], answer
        np.testing.assert_allclose(
            answer["outputs"]["probabilities"],
            [list(p["probabilities"].values()) for p in expected],
            atol=1e-6,
        )
    assert refused["status"] == 422 and "inputs[0].name" in refused["error"], refused


def test_errors_the_middleware_answers_take_the_oip_shape_on_v2(server: str) -> None:
    tensor = {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": ROWS[0]}
    resp = httpx.post(
        f"{server}/v2/models/iris-svc/infer",
        content=json.dumps({"inputs": [tensor]}),
        headers={"Content-Type": "text/plain"},
    )
    assert resp.status_code == 415, resp.text
    body = resp.json()
    assert isinstance(body["error"], str) and body["field"] == "Content-Type", body
    late = httpx.post(
        f"{server}/v2/models/iris-svc/infer",
        json={"inputs": [tensor]},
        headers={"X-Request-Deadline-Ms": "1"},
    )
    assert late.status_code == 504 and isinstance(late.json()["error"], str), late.text
