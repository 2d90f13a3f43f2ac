"""The digits image contract: sniffing, limits, and label stability across sizes and formats."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from serving import preprocessing
from serving.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType
from serving.model import OnnxModel

LIMITS = {"max_bytes": 5 << 20, "max_side": 4096}


def encode(pixels: np.ndarray, fmt: str, size: tuple[int, int] | None = None) -> bytes:
    image = Image.fromarray(pixels.astype(np.uint8))
    if size:
        image = image.resize(size, Image.Resampling.NEAREST)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def test_non_image_is_415() -> None:
    with pytest.raises(UnsupportedMediaType):
        preprocessing.preprocess_image(b"GIF89a....", **LIMITS)


def test_oversize_bytes_and_pixels_are_413() -> None:
    with pytest.raises(PayloadTooLarge):
        preprocessing.preprocess_image(
            b"\x89PNG\r\n\x1a\n" + b"0" * 100, max_bytes=50, max_side=4096
        )
    big = encode(np.zeros((10, 5000)), "PNG")
    with pytest.raises(PayloadTooLarge, match="5000x10"):
        preprocessing.preprocess_image(big, **LIMITS)


def test_truncated_png_is_400() -> None:
    data = encode(np.full((64, 64), 255), "PNG")
    with pytest.raises(BadRequest):
        preprocessing.preprocess_image(data[:40], **LIMITS)


def test_output_shape_and_range() -> None:
    pixels = np.zeros((300, 200))
    pixels[50:250, 90:110] = 255
    x = preprocessing.preprocess_image(encode(pixels, "JPEG"), **LIMITS)
    assert x.shape == (64,) and x.dtype == np.float32
    assert float(x.min()) >= 0 and float(x.max()) == pytest.approx(16.0)


def test_inverted_image_gives_the_same_features() -> None:
    pixels = np.zeros((80, 80))
    pixels[10:70, 30:50] = 255
    a = preprocessing.preprocess_image(encode(pixels, "PNG"), **LIMITS)
    b = preprocessing.preprocess_image(encode(255 - pixels, "PNG"), **LIMITS)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_digits_scaled_to_64px_keep_their_label(data_dir: Path) -> None:
    model = OnnxModel.load(data_dir / "models" / "digits-lr")
    digits = load_digits()
    idx = np.arange(0, len(digits.images), 5)
    rows = [
        preprocessing.preprocess_image(
            encode(digits.images[i] * 255 / 16, "PNG", (64, 64)), **LIMITS
        )
        for i in idx
    ]
    direct = [
        preprocessing.to_features(digits.images[i].astype(np.float32) * 255 / 16) for i in idx
    ]
    pred_png = model.predict(np.stack(rows)).class_ids
    pred_direct = model.predict(np.stack(direct)).class_ids
    assert np.mean(pred_png == pred_direct) >= 0.95
    assert np.mean(pred_png == digits.target[idx]) >= 0.9


def test_decompression_bomb_is_413() -> None:
    bomb = encode(np.zeros((10000, 10000)), "PNG")
    with pytest.raises(PayloadTooLarge):
        preprocessing.preprocess_image(bomb, max_bytes=5 << 20, max_side=20000)
