"""Signed JSON documents: HMAC-SHA256 (stdlib `hmac`) over a canonical encoding.

    signed = sign(document, key)          # the document plus "signature": "<64 hex>"
    document = verify(signed, key)        # the document without it, or SignatureError

The canonical encoding is the document's JSON with sorted keys, no whitespace and UTF-8, so
the signer and the verifier agree on the bytes whatever order or spacing a transport gave
them. The comparison is constant-time (`hmac.compare_digest`). An HMAC key is shared: whoever
can verify can also sign, so every holder of the key is trusted (edge_ai's README, Trade-offs,
says when to prefer an asymmetric signature).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

SIGNATURE = "signature"
MIN_KEY_BYTES = 32
"""A shorter key is refused: HMAC-SHA256 is as strong as its key (RFC 2104: at least the
hash's output length)."""


class SignatureError(ValueError):
    """The document is unsigned or its signature does not match."""


def check_key(key: bytes) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the signing key has {len(key)} bytes; at least {MIN_KEY_BYTES} needed")
    return key


def canonical(document: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: sorted keys, no whitespace, UTF-8."""
    return json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


def signature(document: Mapping[str, Any], key: bytes) -> str:
    body = {k: v for k, v in document.items() if k != SIGNATURE}
    return hmac.new(check_key(key), canonical(body), hashlib.sha256).hexdigest()


def sign(document: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    return {**document, SIGNATURE: signature(document, key)}


def verify(signed: Mapping[str, Any], key: bytes) -> dict[str, Any]:
    """The document without its signature when the signature matches; else SignatureError."""
    given = signed.get(SIGNATURE)
    if given is None:
        raise SignatureError("the document is unsigned")
    if not isinstance(given, str):
        raise SignatureError("the signature is not a string")
    if not hmac.compare_digest(given.encode(), signature(signed, key).encode()):
        raise SignatureError("the signature does not match the document")
    return {k: v for k, v in signed.items() if k != SIGNATURE}
