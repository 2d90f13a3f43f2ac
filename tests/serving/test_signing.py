"""serving/signing.py: HMAC-SHA256 over canonical JSON."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from serving.signing import SignatureError, canonical, sign, verify

KEY = b"k" * 32


def test_a_signed_document_verifies_whatever_its_key_order() -> None:
    signed = sign({"b": 1, "a": {"y": [1, 2], "x": "é"}}, KEY)
    reordered = {"signature": signed["signature"], "a": {"x": "é", "y": [1, 2]}, "b": 1}
    assert verify(reordered, KEY) == {"a": {"x": "é", "y": [1, 2]}, "b": 1}
    assert canonical({"b": 1, "a": 2}) == b'{"a":2,"b":1}'


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d.update(b=2), "does not match"),
        (lambda d: d.update(extra=True), "does not match"),
        (lambda d: d.pop("signature"), "unsigned"),
        (lambda d: d.update(signature=7), "not a string"),
    ],
)
def test_a_changed_or_unsigned_document_is_refused(
    change: Callable[[dict[str, Any]], object], why: str
) -> None:
    signed = sign({"a": 1, "b": 1}, KEY)
    change(signed)
    with pytest.raises(SignatureError, match=why):
        verify(signed, KEY)


def test_another_key_or_a_short_key_is_refused() -> None:
    signed = sign({"a": 1}, KEY)
    with pytest.raises(SignatureError):
        verify(signed, b"o" * 32)
    with pytest.raises(ValueError, match="at least 32"):
        sign({"a": 1}, b"short")
