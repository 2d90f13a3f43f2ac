"""Digits image preprocessing: any PNG or JPEG -> the 8x8 float32 vector `digits-*` models expect.

The steps (versioned by PREPROCESS_VERSION; a model's card names the version it was trained for,
and a server refuses to pair a model with a different version):
grayscale -> invert when the background is light (mean > 127) -> crop to the ink -> pad to a
square -> area-resize to 8x8 -> scale to [0, 16], the range of scikit-learn's digits data.
Training applies the same `to_features` to scikit-learn's 8x8 digits, so the model learns on
exactly what serving feeds it (no training/serving skew).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from serving.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

PREPROCESS_NAME = "digits-8x8"
PREPROCESS_VERSION = "1"
PARAMS: dict[str, Any] = {
    "size": 8,
    "invert_if_mean_above": 127,
    "ink_fraction": 0.2,
    "scale_max": 16.0,
}

_MAGIC = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG"}


def sniff(data: bytes) -> str:
    """The image format by magic bytes (never by the client's Content-Type)."""
    for magic, fmt in _MAGIC.items():
        if data.startswith(magic):
            return fmt
    raise UnsupportedMediaType(
        "body is not a PNG or JPEG image (checked by its magic bytes)", field="body"
    )


def open_checked(data: bytes, *, max_bytes: int, max_side: int) -> Image.Image:
    """Check the byte size, the magic bytes and the header's dimensions without decoding any
    pixels (cheap enough for an API that only enqueues the image)."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"image is {len(data)} bytes; the limit is {max_bytes}", field="body")
    fmt = sniff(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise PayloadTooLarge(f"image has too many pixels: {exc}", field="body") from exc
    except UnidentifiedImageError as exc:  # its message is the repr of our BytesIO
        raise BadRequest(
            f"cannot decode the {fmt} image: not a valid {fmt} file", field="body"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"cannot decode the {fmt} image: {exc}", field="body") from exc
    width, height = image.size
    if width > max_side or height > max_side:
        raise PayloadTooLarge(
            f"image is {width}x{height} px; the limit is {max_side}x{max_side}", field="body"
        )
    return image


def decode(data: bytes, *, max_bytes: int, max_side: int) -> Image.Image:
    """Check size limits before decoding pixels, then decode to 8-bit grayscale."""
    image = open_checked(data, max_bytes=max_bytes, max_side=max_side)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return image.convert("L")
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise PayloadTooLarge(f"image has too many pixels: {exc}", field="body") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadRequest(f"cannot decode the image: {exc}", field="body") from exc


def to_features(gray: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The numeric part of the contract, on a 2-D grayscale array in [0, 255]."""
    size = int(PARAMS["size"])
    if gray.mean() > PARAMS["invert_if_mean_above"]:
        gray = 255.0 - gray
    peak = float(gray.max())
    if peak <= 0:
        return np.zeros((size * size,), dtype=np.float32)
    rows = np.flatnonzero((gray >= peak * PARAMS["ink_fraction"]).any(axis=1))
    cols = np.flatnonzero((gray >= peak * PARAMS["ink_fraction"]).any(axis=0))
    ink = gray[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    side = max(ink.shape)
    square = np.zeros((side, side), dtype=np.float32)
    top = (side - ink.shape[0]) // 2
    left = (side - ink.shape[1]) // 2
    square[top : top + ink.shape[0], left : left + ink.shape[1]] = ink
    small = Image.fromarray(square).resize((size, size), Image.Resampling.BOX)
    out = np.asarray(small, dtype=np.float32)
    top_value = float(out.max())
    if top_value > 0:
        out = out * (float(PARAMS["scale_max"]) / top_value)
    return np.clip(out, 0.0, float(PARAMS["scale_max"])).reshape(-1).astype(np.float32)


def preprocess_image(data: bytes, *, max_bytes: int, max_side: int) -> npt.NDArray[np.float32]:
    """Bytes of a PNG/JPEG -> one row of 64 features in [0, 16]."""
    image = decode(data, max_bytes=max_bytes, max_side=max_side)
    return to_features(np.asarray(image, dtype=np.float32))


def render_digit(
    values: list[float], *, width: int = 32, height: int | None = None, fmt: str = "PNG"
) -> bytes:
    """The way back, for seeds, load tests and tests: 64 values in [0, 16] (an 8x8 digit) drawn
    as a `width` x `height` grayscale PNG or JPEG (dark ink on black, like the digits data)."""
    img = Image.new("L", (8, 8))
    img.putdata([round(v * 255 / PARAMS["scale_max"]) for v in values])
    buf = io.BytesIO()
    img.resize((width, height or width), Image.Resampling.NEAREST).save(buf, format=fmt)
    return buf.getvalue()
