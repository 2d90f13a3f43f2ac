"""Admission control for prediction routes: deadlines and overload shedding.

- `X-Request-Deadline-Ms`: the client's deadline as Unix epoch milliseconds (absolute, so it
  survives hops: each service forwards it unchanged and computes what is left). Already passed
  -> 504 at once; passing while the request runs -> the work is cancelled and 504 goes out.
  Not a number -> 400 naming the header.
- `MLSP_MAX_INFLIGHT`: above that many requests in progress, answer 503 with Retry-After at
  once instead of queueing: a queue only turns overload into timeouts for everybody. A request
  is admitted (and counted in progress) once its body is read: a client that sends its body
  slowly holds a connection, never a slot.
- `MLSP_QUEUE_TARGET_MS`: shed by queueing time, for the overload the in-flight count misses.
  An asyncio server runs one request at a time; under overload requests wait in the event
  loop's ready queue (and uvicorn's pipeline) while the in-flight count stays low. Each
  request's sojourn time is measured: from when its headers were parsed (stamped by
  serving/protocol.py) to when the middleware starts it. A per-request sojourn rather than the
  event loop's lag: the lag is one sampled number for the whole loop, the sojourn is exactly
  how long this request waited, at the cost of one clock read. The rule is CoDel's as servers
  use it ("Fail at Scale", Maurer 2015): when the shortest sojourn of the last interval
  (`MLSP_QUEUE_INTERVAL_MS`) stayed above the target, the queue is standing and a request that
  waited longer than the target is shed; otherwise only one that waited longer than the
  interval is (a burst drains on its own). Shed means 503 + Retry-After, before the body is
  read.

The checks run inside the request middleware (serving/middleware.py), so rejections are
counted, logged and carry the request id like any other response.
"""

from __future__ import annotations

import time

from serving.errors import ApiError, BadRequest, DeadlineExceeded, Unavailable
from serving.settings import ServingSettings

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


def _overloaded(message: str) -> Unavailable:
    return Unavailable(f"overloaded: {message}", reason="overloaded", retry_after=1)


class Admission:
    def __init__(
        self,
        max_inflight: int | None,
        *,
        queue_target: float | None = None,
        queue_interval: float = 0.1,
        body_limit: int = 1 << 20,
    ) -> None:
        self.max_inflight = max_inflight
        self.inflight = 0
        self.queue_target = queue_target
        """Seconds (None: no shedding by queueing time)."""
        self.queue_interval = queue_interval
        self.body_limit = body_limit
        """Largest body read before admission on a guarded route (the route's own limit,
        smaller or equal, still applies)."""
        self._interval_end = 0.0
        self._min_sojourn = 0.0
        self._standing = False

    @classmethod
    def from_settings(cls, s: ServingSettings) -> Admission:
        target = s.queue_target_ms
        return cls(
            s.max_inflight,
            queue_target=None if target is None else target / 1000,
            queue_interval=s.queue_interval_ms / 1000,
            body_limit=max(s.max_body_bytes, s.max_image_bytes),
        )

    @staticmethod
    def guards(path: str) -> bool:
        return path.startswith(GUARDED_PREFIXES) and not path.endswith("/ready")

    def applies(self, path: str, raw_deadline: bytes | None) -> bool:
        """Whether the request goes through admission: a guarded route, and a deadline to
        check or overload to shed."""
        sheds = self.max_inflight is not None or self.queue_target is not None
        return (sheds or raw_deadline is not None) and self.guards(path)

    def queued_too_long(self, sojourn: float, now: float) -> Unavailable | None:
        """The rejection of a request that waited `sojourn` seconds before it ran, if any
        (CoDel, module docstring); None when shedding by queueing time is off."""
        target = self.queue_target
        if target is None:
            return None
        if now >= self._interval_end:
            self._standing = self._min_sojourn > target
            self._min_sojourn = sojourn
            self._interval_end = now + self.queue_interval
        elif sojourn < self._min_sojourn:
            self._min_sojourn = sojourn
        limit = target if self._standing else self.queue_interval
        if sojourn <= limit:
            return None
        return _overloaded(
            f"the request waited {sojourn * 1000:.0f} ms before it ran "
            f"(limit {limit * 1000:.0f} ms)"
        )

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
            return None, _overloaded(
                f"{self.inflight} requests in progress (limit {self.max_inflight})"
            )
        return left, None


def deadline_header(seconds_from_now: float) -> dict[str, str]:
    """The header a client sends to give the whole call chain `seconds_from_now`."""
    return {"X-Request-Deadline-Ms": str(int((time.time() + seconds_from_now) * 1000))}
