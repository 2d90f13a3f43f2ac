"""Load for circuit_breaker: iris rows and batches through the breaker, each answer checked for
its `source` and `degraded` (a 200 is a success whoever answered, as long as `degraded` matches
the source), and bad input (422).

Stop the primary meanwhile (`make stop PATTERN=circuit_breaker PROCESS=primary`): the failure
count stays 0; the proxy's `mlsp_fallbacks_total` shows how much of the load the fallbacks
carried.

make loadtest PATTERN=circuit_breaker SECONDS=30 USERS=20
"""

from __future__ import annotations

from typing import Any

from bench.users import PredictUser, expect

SOURCES = {"primary": False, "cache": True, "fallback_model": True}


class CircuitBreakerUser(PredictUser):
    def check(self, resp: Any) -> None:
        if resp.status_code != 200:
            expect(resp, 200)
            return
        body = resp.json()
        source = body.get("source")
        if source not in SOURCES or body.get("degraded") is not SOURCES[source]:
            resp.failure(f"source {source!r} with degraded {body.get('degraded')!r}")
            return
        resp.success()
