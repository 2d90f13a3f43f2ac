"""One error base class, each subclass carrying its HTTP status; one JSON error shape.

Every error leaves the server as `{"error": {"code", "message", "request_id", ...}}`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import orjson


class ApiError(Exception):
    """Base of every error the API returns on purpose."""

    status_code = 500
    code = "internal"

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def headers(self) -> dict[str, str]:
        return {}

    def body(self, request_id: str | None) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "request_id": request_id,
                **self.extra,
            }
        }


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status_code = 405
    code = "method_not_allowed"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


class InvalidInput(ApiError):
    """422: the request parsed but a field is invalid; `errors` names each field."""

    status_code = 422
    code = "invalid_input"

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        first_field, first_msg = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(
            f"{first_field}: {first_msg}{more}",
            field=first_field,
            details=[{"field": f, "message": m} for f, m in errors],
        )


class Skew(ApiError):
    """422: the input was prepared for another contract than the model's (preprocessing
    version, dtype, shape): a deployment mismatch between a preprocessor and a predictor."""

    status_code = 422
    code = "skew"

    def __init__(self, field: str, message: str, *, expected: object, got: object) -> None:
        super().__init__(f"{field}: {message}", field=field, expected=expected, got=got)


class Unavailable(ApiError):
    """503: not ready, overloaded, or a dependency is down (named in `dependency`)."""

    status_code = 503
    code = "unavailable"

    def __init__(
        self, message: str, *, dependency: str | None = None, retry_after: int = 1, **extra: Any
    ) -> None:
        if dependency is not None:
            extra["dependency"] = dependency
        super().__init__(message, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class DeadlineExceeded(ApiError):
    status_code = 504
    code = "deadline_exceeded"


class Rendered(NamedTuple):
    """An error as it leaves the server: status, JSON body, headers (lower-case, bytes)."""

    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]


def render(exc: ApiError, request_id: str | None) -> Rendered:
    """The one renderer of errors: the FastAPI handlers and the raw-ASGI fast path both call
    it, so a 4xx/5xx has the same body and headers whichever path served the request."""
    headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    return Rendered(exc.status_code, orjson.dumps(exc.body(request_id)), headers)


def internal(request_id: str | None) -> Rendered:
    """An unexpected exception, after it was logged: a 500 that names no internals."""
    return render(ApiError("internal error"), request_id)


def field_path(loc: Sequence[str | int]) -> str:
    """Render a validation location as `instances[2][1]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"
