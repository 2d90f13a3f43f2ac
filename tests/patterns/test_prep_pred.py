"""prep_pred as real processes: prep (preprocessing) in front of pred (tensors only).

Digits from scikit-learn's data are drawn as images of other sizes and formats: scaling up
must not change what the model says, and the contract between the two services is enforced.
"""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from patterns.runner import RunningPattern, start_pattern
from serving.preprocessing import render_digit
from tests.conftest import spawn_server

pytestmark = pytest.mark.slow


@pytest.fixture
def pattern(data_dir: Path) -> Iterator[RunningPattern]:
    with start_pattern("prep_pred", data_dir=data_dir) as run:
        yield run


def digits(n: int) -> tuple[list[list[float]], list[int]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(data.target), size=n, replace=False)
    return data.data[idx].tolist(), data.target[idx].tolist()


def predict_image(url: str, data: bytes, content_type: str = "image/png") -> httpx.Response:
    return httpx.post(
        f"{url}/predict/image", content=data, headers={"Content-Type": content_type}, timeout=10
    )


def test_digits_scaled_up_to_64px_keep_their_label(pattern: RunningPattern) -> None:
    prep = pattern.url("prep")
    rows, truth = digits(200)
    kept = correct = 0
    with httpx.Client(timeout=10) as client:
        for values, label in zip(rows, truth, strict=True):
            small = client.post(f"{prep}/predict/image", content=render_digit(values, width=8))
            big = client.post(f"{prep}/predict/image", content=render_digit(values, width=64))
            assert small.status_code == big.status_code == 200, big.text
            got = big.json()["predictions"][0]["label"]
            kept += got == small.json()["predictions"][0]["label"]
            correct += got == str(label)
    assert kept / len(rows) >= 0.95, kept
    assert correct / len(rows) >= 0.9, correct  # and the answers are right, not just stable
    body = big.json()
    assert body["model"] == {"name": "digits-lr", "version": "1"}
    assert body["preprocess_version"] == "1"


def test_any_size_png_or_jpeg_is_accepted_and_bad_input_refused(pattern: RunningPattern) -> None:
    prep = pattern.url("prep")
    rows, _ = digits(1)
    jpeg = render_digit(rows[0], width=300, height=200, fmt="JPEG")
    assert Image.open(io.BytesIO(jpeg)).size == (300, 200)
    resp = predict_image(prep, jpeg, "image/jpeg")
    assert resp.status_code == 200, resp.text
    assert resp.json()["predictions"][0]["label"] in [str(d) for d in range(10)]
    not_image = predict_image(prep, b"GIF89a not what we take", "image/gif")
    assert not_image.status_code == 415 and not_image.json()["error"]["field"] == "body"
    too_wide = render_digit(rows[0], width=5000, height=10)
    assert predict_image(prep, too_wide).status_code == 413
    too_big = predict_image(prep, b"\x89PNG\r\n\x1a\n" + b"\0" * (6 << 20))
    assert too_big.status_code == 413


def tensor(version: str | None, datatype: str = "FP32", width: int = 64) -> dict[str, object]:
    body: dict[str, object] = {
        "inputs": [{"name": "X", "shape": [1, width], "datatype": datatype, "data": [0.0] * width}]
    }
    if version is not None:
        body["parameters"] = {"preprocess_version": version}
    return body


def test_pred_refuses_a_tensor_made_for_another_contract(pattern: RunningPattern) -> None:
    infer = f"{pattern.url('pred')}/v2/models/digits-lr/infer"
    assert httpx.post(infer, json=tensor("1")).status_code == 200
    for body, field in [
        (tensor("2"), "parameters.preprocess_version"),
        (tensor(None), "parameters.preprocess_version"),
        (tensor("1", "FP64"), "inputs[0].datatype"),
        (tensor("1", width=63), "inputs[0].shape"),
    ]:
        resp = httpx.post(infer, json=body)
        assert resp.status_code == 422, (body, resp.text)
        error = resp.json()  # the OIP shape: the message as `error`, the fields beside it
        assert isinstance(error["error"], str)
        assert (error["code"], error["field"]) == ("skew", field)
    # tensors only: no image decoding (and no untyped rows) on pred
    assert httpx.post(f"{pattern.url('pred')}/predict/image", content=b"x").status_code == 404


def test_a_prep_release_out_of_step_with_pred_is_503_skew(
    pattern: RunningPattern, tmp_path: Path
) -> None:
    # A prep built with preprocessing v2 in front of a pred whose model was trained for v1.
    v2 = "import serving.preprocessing as p; p.PREPROCESS_VERSION = '2'"
    env = {"MLSP_PRED_URL": pattern.url("pred")}
    with spawn_server("patterns.prep_pred.prep", env, tmp_path / "v2.log", patch=v2) as prep:
        rows, _ = digits(1)
        resp = predict_image(prep, render_digit(rows[0]))
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert (error["dependency"], error["reason"]) == ("pred", "skew")


def test_pred_down_is_503_naming_it(pattern: RunningPattern) -> None:
    prep = pattern.url("prep")
    rows, _ = digits(1)
    assert predict_image(prep, render_digit(rows[0])).status_code == 200
    pattern.kill("pred")
    resp = predict_image(prep, render_digit(rows[0]))
    assert resp.status_code == 503 and resp.json()["error"]["dependency"] == "pred"
    assert resp.headers["retry-after"]
    assert httpx.get(f"{prep}/readyz").status_code == 200  # prep itself is fine
    # bad input is still refused by prep without pred
    assert predict_image(prep, b"nope").status_code == 415


def test_prep_and_pred_scale_as_separate_services(data_dir: Path, tmp_path: Path) -> None:
    """Two preps share one pred: each is its own process with its own settings."""
    pred_env = {
        "MLSP_MODEL_DIR": str(data_dir / "models" / "digits-lr"),
        "MLSP_REQUIRE_CONTRACT": "true",
    }
    with spawn_server("patterns.prep_pred.pred", pred_env, tmp_path / "pred.log") as pred:
        rows, _ = digits(1)
        png = render_digit(rows[0])
        answers = []
        for i in range(2):
            env = {"MLSP_PRED_URL": pred}
            with spawn_server("patterns.prep_pred.prep", env, tmp_path / f"prep{i}.log") as prep:
                answers.append(predict_image(prep, png).json()["predictions"])
        assert answers[0] == answers[1]


def test_a_hung_pred_is_503_after_its_timeout(pattern: RunningPattern) -> None:
    prep = pattern.url("prep")
    rows, _ = digits(1)
    png = render_digit(rows[0])
    assert predict_image(prep, png).status_code == 200
    pred = pattern.proc("pred")
    pred.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    try:
        resp = predict_image(prep, png)
    finally:
        pred.send_signal(signal.SIGCONT)
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert (error["dependency"], error["reason"]) == ("pred", "timeout")
