"""Admission control for prediction routes: deadlines and overload shedding.

- `X-Request-Deadline-Ms`: the client's deadline as Unix epoch milliseconds (absolute, so it
  survives hops: each service forwards it unchanged and computes what is left). Already passed
  -> 504 at once; passing while the request runs -> the work is cancelled and 504 goes out.
  Not a number -> 400 naming the header.
- `MLSP_MAX_INFLIGHT`: above that many requests in progress, answer 503 with Retry-After at
  once instead of queueing: a queue only turns overload into timeouts for everybody.

The check runs inside the request middleware (serving/middleware.py), so rejections are
counted, logged and carry the request id like any other response.
"""

from __future__ import annotations

import time

from serving.errors import ApiError, BadRequest, DeadlineExceeded, Unavailable

DEADLINE_HEADER = b"x-request-deadline-ms"
GUARDED_PREFIXES = ("/predict", "/v2/models/")


MAX_DEADLINE_DIGITS = 16
"""Epoch milliseconds have 13 digits until the year 2286; longer is not a deadline (and a
300-digit integer would overflow the float arithmetic below)."""


def deadline_seconds(raw: bytes | str) -> float:
    """`X-Request-Deadline-Ms` as Unix epoch seconds; BadRequest naming the header if it is
    not a plain non-negative integer of at most MAX_DEADLINE_DIGITS digits."""
    text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    text = text.strip()
    if not (text.isascii() and text.isdigit() and len(text) <= MAX_DEADLINE_DIGITS):
        raise BadRequest(
            "X-Request-Deadline-Ms must be Unix epoch milliseconds",
            field="X-Request-Deadline-Ms",
        )
    return int(text) / 1000


class Admission:
    def __init__(self, max_inflight: int | None) -> None:
        self.max_inflight = max_inflight
        self.inflight = 0

    @staticmethod
    def guards(path: str) -> bool:
        return path.startswith(GUARDED_PREFIXES) and not path.endswith("/ready")

    def admit(self, raw_deadline: bytes | None) -> tuple[float | None, ApiError | None]:
        """(seconds left before the deadline or None, the rejection if any)."""
        left: float | None = None
        if raw_deadline is not None:
            try:
                left = deadline_seconds(raw_deadline) - time.time()
            except BadRequest as exc:
                return None, exc
            if left <= 0:
                return None, DeadlineExceeded(
                    f"the deadline passed {-left * 1000:.0f} ms before the request arrived",
                    field="X-Request-Deadline-Ms",
                )
        if self.max_inflight is not None and self.inflight >= self.max_inflight:
            return None, Unavailable(
                f"overloaded: {self.inflight} requests in progress (limit {self.max_inflight})",
                reason="overloaded",
                retry_after=1,
            )
        return left, None


def deadline_header(seconds_from_now: float) -> dict[str, str]:
    """The header a client sends to give the whole call chain `seconds_from_now`."""
    return {"X-Request-Deadline-Ms": str(int((time.time() + seconds_from_now) * 1000))}
