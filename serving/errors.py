"""One error base class, each subclass carrying its HTTP status; one JSON error shape.

Every error leaves the server as `{"error": {"code", "message", "request_id", ...}}`, except on
the Open Inference Protocol routes (`/v2...`), whose clients read `error` as a string: there the
message is `error` and the other fields sit beside it (`{"error": "...", "code", "request_id",
...}`). `error_fields` reads either shape.
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

    def body(self, request_id: str | None, *, oip: bool = False) -> dict[str, Any]:
        """The JSON body; `oip`: the OIP v2 shape (the message as the `error` string)."""
        if oip:
            return {
                "error": self.message,
                "code": self.code,
                "request_id": request_id,
                **self.extra,
            }
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "request_id": request_id,
                **self.extra,
            }
        }


def is_oip(path: str) -> bool:
    """A route of the Open Inference Protocol v2 (its errors take the OIP shape)."""
    return path == "/v2" or path.startswith("/v2/")


def error_fields(body: Any) -> dict[str, Any] | None:
    """The error's fields (`code`, `message`, `field`, ...) of an answer in either shape, or
    None when the body is no error of ours."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {**{k: v for k, v in body.items() if k != "error"}, "message": error}
    return None


class BadRequest(ApiError):
    status_code = 400
    code = "bad_request"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    """405, with the `Allow` header (RFC 9110) naming the methods the route takes."""

    status_code = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: str) -> None:
        methods = [m.strip() for m in allow.split(",") if m.strip()]
        if "GET" in methods and "HEAD" not in methods:
            methods.append("HEAD")  # served for every GET route (serving/app.py)
        super().__init__(message, allow=methods)
        self.allow = ", ".join(methods)

    def headers(self) -> dict[str, str]:
        return {"Allow": self.allow}


class RequestTimeout(ApiError):
    """408: the request's headers or body did not arrive in time (serving/protocol.py)."""

    status_code = 408
    code = "request_timeout"


class HeadersTooLarge(ApiError):
    """431: the request head is over the size or line limit (serving/protocol.py)."""

    status_code = 431
    code = "headers_too_large"


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


def render(exc: ApiError, request_id: str | None, path: str = "") -> Rendered:
    """The one renderer of errors: the FastAPI handlers and the raw-ASGI middleware both call
    it, so a 4xx/5xx has the same body and headers whichever path served the request; `path`
    picks the OIP shape on `/v2` routes."""
    headers = [(k.lower().encode(), v.encode()) for k, v in exc.headers().items()]
    body = exc.body(request_id, oip=is_oip(path))
    return Rendered(exc.status_code, orjson.dumps(body), headers)


def internal(request_id: str | None, path: str = "") -> Rendered:
    """An unexpected exception, after it was logged: a 500 that names no internals."""
    return render(ApiError("internal error"), request_id, path)


def field_path(loc: Sequence[str | int]) -> str:
    """Render a validation location as `instances[2][1]`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"
