"""The shared API and OIP v2 through the app factory (in-process, both hot-path modes)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from serving.app import create_app
from serving.errors import error_fields
from serving.settings import ServingSettings

ROW = [5.1, 3.5, 1.4, 0.2]


def client_for(model_dir: Path, **overrides: object) -> TestClient:
    settings = ServingSettings(model_dir=model_dir, access_log=False, **overrides)
    return TestClient(create_app(settings))


def wait_ready(client: TestClient, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, client.get("/readyz").json()
        time.sleep(0.05)


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-route"])
def client(request: pytest.FixtureRequest, iris_dir: Path) -> Iterator[TestClient]:
    with client_for(iris_dir, fast_path=request.param, max_batch=8) as c:
        wait_ready(c)
        yield c


def error(resp: object) -> dict[str, object]:
    body = resp.json()  # type: ignore[attr-defined]
    if resp.url.path.startswith("/v2"):  # type: ignore[attr-defined]
        # OIP clients read `error` as a string; the project's fields sit beside it
        assert isinstance(body["error"], str) and {"code", "request_id"} <= body.keys()
        fields = error_fields(body)
        assert fields is not None
        return fields
    assert set(body) == {"error"}
    assert {"code", "message", "request_id"} <= body["error"].keys()
    return body["error"]  # type: ignore[no-any-return]


def test_predict(client: TestClient) -> None:
    resp = client.post("/predict", json={"instances": [ROW, [6.3, 3.4, 5.6, 2.4]]})
    assert resp.status_code == 200
    body = resp.json()
    assert body["model"]["name"] == "iris-svc" and body["model"]["version"]
    assert [p["label"] for p in body["predictions"]] == ["setosa", "virginica"]
    assert body["request_id"] == resp.headers["x-request-id"]
    probs = body["predictions"][0]["probabilities"]
    assert set(probs) == {"setosa", "versicolor", "virginica"}
    assert sum(probs.values()) == pytest.approx(1, abs=1e-4)


def test_request_id_is_echoed_or_minted(client: TestClient) -> None:
    resp = client.post("/predict", json={"instances": [ROW]}, headers={"X-Request-ID": "abc-1"})
    assert resp.headers["x-request-id"] == "abc-1" and resp.json()["request_id"] == "abc-1"
    minted = client.get("/livez").headers["x-request-id"]
    assert len(minted) == 36 and minted[14] == "4"  # a full UUID4


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"instances": [[5.1, 3.5, 1.4]]}, "instances[0]"),
        ({"instances": [ROW, [5.1, 3.5, 1.4, "x"]]}, "instances[1][3]"),
        ({"instances": [[5.1, 3.5, "1.4", 0.2]]}, "instances[0][2]"),
        ({"instances": []}, "instances"),
        ({"instances": [ROW] * 9}, "instances"),
        ({"instances": [[5.1, 3.5, 1.4, True]]}, "instances[0][3]"),
        ({"instances": [[5.1, 3.5, 1.4, 1e39]]}, "instances[0][3]"),
        ({"rows": [ROW]}, "instances"),
        ({"instances": ROW}, "instances[0]"),
    ],
)
def test_invalid_input_is_422_naming_the_field(
    client: TestClient, payload: object, field: str
) -> None:
    resp = client.post("/predict", json=payload)
    assert resp.status_code == 422, resp.text
    err = error(resp)
    assert err["code"] == "invalid_input" and err["field"] == field
    assert field in str(err["message"])


def test_nan_is_422(client: TestClient) -> None:
    resp = client.post("/predict", content=b'{"instances":[[5.1,3.5,NaN,0.2]]}')
    assert resp.status_code == 422 and error(resp)["field"] == "instances[0][2]"


def test_malformed_json_is_400_and_oversize_is_413(client: TestClient) -> None:
    assert client.post("/predict", content=b'{"instances": [[').status_code == 400
    big = b'{"instances":[' + b"[1.0,2.0,3.0,4.0]," * 70000 + b"[1,2,3,4]]}"
    resp = client.post("/predict", content=big)
    assert resp.status_code == 413 and error(resp)["code"] == "payload_too_large"


def test_unknown_route_and_method(client: TestClient) -> None:
    assert error(client.get("/nope"))["code"] == "not_found"
    resp = client.get("/predict")
    assert resp.status_code == 405 and error(resp)["code"] == "method_not_allowed"


def test_image_route_refuses_a_feature_model(client: TestClient) -> None:
    resp = client.post("/predict/image", content=b"\x89PNG\r\n\x1a\n")
    assert resp.status_code == 404 and "POST /predict" in str(error(resp)["message"])


def test_metadata_and_metrics(client: TestClient) -> None:
    meta = client.get("/metadata").json()
    assert meta["name"] == "iris-svc" and meta["labels"] == ["setosa", "versicolor", "virginica"]
    assert "golden" not in meta and meta["max_batch"] == 8
    client.post("/predict", json={"instances": [ROW]})
    text = client.get("/metrics").text
    for name in (
        "mlsp_requests_total",
        "mlsp_request_duration_seconds",
        "mlsp_inference_duration_seconds",
        "mlsp_model_info",
    ):
        assert name in text
    assert 'route="/predict"' in text and f'version="{meta["version"]}"' in text


def test_openapi_documents_the_predict_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    assert "instances" in body["schema"]["properties"]
    assert client.get("/docs").status_code == 200


def test_readyz_is_503_until_the_model_appears(model_copy: Path, tmp_path: Path) -> None:
    target = tmp_path / "later"
    with client_for(target, model_wait_seconds=30) as c:
        deadline = time.monotonic() + 10
        while True:  # the first look may land before the first load attempt has finished
            resp = c.get("/readyz")
            assert resp.status_code == 503 and resp.json()["ready"] is False
            if "no model.onnx" in resp.json()["reasons"][0] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert "no model.onnx" in resp.json()["reasons"][0]
        assert c.post("/predict", json={"instances": [ROW]}).status_code == 503
        model_copy.rename(target)
        wait_ready(c)
        assert c.post("/predict", json={"instances": [ROW]}).status_code == 200


def test_tampered_model_never_becomes_ready(model_copy: Path) -> None:
    (model_copy / "model.onnx").write_bytes((model_copy / "model.onnx").read_bytes() + b"x")
    with client_for(model_copy) as c:
        time.sleep(0.5)
        resp = c.get("/readyz")
        assert resp.status_code == 503 and "sha256 mismatch" in resp.json()["reasons"][0]


def test_image_prediction_for_a_digits_model(data_dir: Path) -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    with client_for(data_dir / "models" / "digits-lr") as c:
        wait_ready(c)
        hits = 0
        for i in range(0, 100, 10):
            img = Image.fromarray((digits.images[i] * 255 / 16).astype(np.uint8)).resize(
                (64, 64), Image.Resampling.NEAREST
            )
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            resp = c.post(
                "/predict/image", content=buf.getvalue(), headers={"Content-Type": "image/png"}
            )
            assert resp.status_code == 200, resp.text
            assert resp.json()["preprocess_version"] == "1"
            hits += resp.json()["predictions"][0]["label"] == str(digits.target[i])
        assert hits >= 9
        assert c.post("/predict/image", content=b"hello").status_code == 415


def test_outlier_model_returns_scores(data_dir: Path) -> None:
    with client_for(data_dir / "models" / "iris-ocsvm") as c:
        wait_ready(c)
        preds = c.post("/predict", json={"instances": [ROW, [12, 9, 15, 8]]}).json()
        assert [p["label"] for p in preds["predictions"]] == ["inlier", "outlier"]
        assert preds["predictions"][1]["score"] < 0 < preds["predictions"][0]["score"]


# --- Open Inference Protocol v2 conformance ---------------------------------------------


def test_oip_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2").json()["name"] == "ml-system-patterns"
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    meta = client.get("/v2/models/iris-svc").json()
    assert meta["name"] == "iris-svc" and meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    version = meta["versions"][0]
    assert client.get(f"/v2/models/iris-svc/versions/{version}").status_code == 200
    assert client.get("/v2/models/iris-svc/ready").json()["ready"] is True
    assert client.get("/v2/models/other").status_code == 404
    assert client.get("/v2/models/iris-svc/versions/999/ready").status_code == 404


def test_oip_infer_round_trip_matches_predict(client: TestClient) -> None:
    rows = [ROW, [6.3, 3.4, 5.6, 2.4]]
    req = {
        "id": "r1",
        "inputs": [
            {"name": "X", "shape": [2, 4], "datatype": "FP32", "data": [v for r in rows for v in r]}
        ],
    }
    resp = client.post("/v2/models/iris-svc/infer", json=req)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model_name"] == "iris-svc" and body["id"] == "r1"
    out = {o["name"]: o for o in body["outputs"]}
    assert out["label"]["shape"] == [2] and out["label"]["data"] == [0, 2]
    assert out["probabilities"]["shape"] == [2, 3]
    plain = client.post("/predict", json={"instances": rows}).json()["predictions"]
    expected = [v for p in plain for v in p["probabilities"].values()]
    np.testing.assert_allclose(out["probabilities"]["data"], expected, atol=1e-6)
    nested = dict(req, outputs=[{"name": "label"}])
    nested["inputs"] = [dict(req["inputs"][0], data=rows)]  # type: ignore[arg-type]
    one = client.post(f"/v2/models/iris-svc/versions/{body['model_version']}/infer", json=nested)
    assert [o["name"] for o in one.json()["outputs"]] == ["label"]


@pytest.mark.parametrize(
    ("tensor", "field"),
    [
        ({"name": "Y", "shape": [1, 4], "datatype": "FP32", "data": ROW}, "inputs[0].name"),
        ({"name": "X", "shape": [1, 3], "datatype": "FP32", "data": ROW[:3]}, "inputs[0].shape"),
        ({"name": "X", "shape": [2, 4], "datatype": "FP32", "data": ROW}, "inputs[0].data"),
        ({"name": "X", "shape": [1, 4], "datatype": "BYTES", "data": ROW}, "inputs[0].datatype"),
        (
            {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "3", 4]},
            "inputs[0].data",
        ),
    ],
)
def test_oip_bad_tensors_are_422(client: TestClient, tensor: dict[str, object], field: str) -> None:
    resp = client.post("/v2/models/iris-svc/infer", json={"inputs": [tensor]})
    assert resp.status_code == 422, resp.text
    assert error(resp)["field"] == field


def test_oip_empty_batch_and_huge_integer_are_422(client: TestClient) -> None:
    empty = {"inputs": [{"name": "X", "shape": [0, 4], "datatype": "FP32", "data": []}]}
    resp = client.post("/v2/models/iris-svc/infer", json=empty)
    assert resp.status_code == 422 and error(resp)["field"] == "inputs[0].shape"
    huge = (
        b'{"inputs":[{"name":"X","shape":[1,4],"datatype":"INT64","data":[1,2,3,1'
        + b"0" * 400
        + b"]}]}"
    )
    resp = client.post("/v2/models/iris-svc/infer", content=huge)
    assert resp.status_code == 422 and error(resp)["field"] == "inputs[0].data"


def test_unhandled_errors_are_counted_and_carry_the_request_id(iris_dir: Path) -> None:
    def boom(app: object, state: object) -> None:
        @app.get("/boom")  # type: ignore[attr-defined,misc]
        async def fail() -> None:
            raise RuntimeError("bug")

    settings = ServingSettings(model_dir=iris_dir, access_log=False, service="boom-test")
    with TestClient(create_app(settings, extend=boom), raise_server_exceptions=False) as c:
        resp = c.get("/boom", headers={"X-Request-ID": "r-500"})
        assert resp.status_code == 500 and resp.headers["x-request-id"] == "r-500"
        assert error(resp)["code"] == "internal"
        text = c.get("/metrics").text
        assert 'mlsp_requests_total{route="/boom",service="boom-test",status="500"}' in text
