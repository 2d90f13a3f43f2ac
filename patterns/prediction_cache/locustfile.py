"""Load for prediction_cache: repeated rows from a small pool (hits), fresh rows (misses) and
bad input that must be a 422 before the cache; every answer must carry X-Cache.

make loadtest PATTERN=prediction_cache SECONDS=30 USERS=20
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, between, task

from bench.users import expect, row

# The inputs that recur: the same 20 rows for every user, so they are hits after the first.
POOL = [row() for _ in range(20)]


def check_x_cache(resp: Any) -> None:
    """A 200 must say what the cache did; a 4xx must not (it never reaches the cache)."""
    expect(resp, 200)
    if resp.status_code == 200 and resp.headers.get("x-cache") not in ("HIT", "MISS", "BYPASS"):
        resp.failure(f"X-Cache missing or unknown: {resp.headers.get('x-cache')!r}")


class PredictionCacheUser(FastHttpUser):
    wait_time = between(0.0, 0.01)

    @task(14)
    def repeated(self) -> None:
        with self.client.post(
            "/predict",
            json={"instances": [random.choice(POOL)]},
            name="/predict (repeat)",
            catch_response=True,
        ) as resp:
            check_x_cache(resp)

    @task(5)
    def fresh(self) -> None:
        with self.client.post(
            "/predict", json={"instances": [row()]}, name="/predict (fresh)", catch_response=True
        ) as resp:
            check_x_cache(resp)

    @task(1)
    def bad_input_is_422(self) -> None:
        with self.client.post(
            "/predict", json={"instances": [[5.1, 3.5]]}, name="/predict (bad)", catch_response=True
        ) as resp:
            expect(resp, 422)
            if resp.status_code == 422 and "x-cache" in resp.headers:
                resp.failure("a refused request reached the cache")
