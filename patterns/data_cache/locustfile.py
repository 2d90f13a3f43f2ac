"""Load for data_cache: predictions by item id over the seeded ids digit-0001..digit-0200 (the
first 100 warmed, the rest misses until first asked), unknown ids that must be 404 and invalid
ids that must be 422.

make loadtest PATTERN=data_cache SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from bench.users import expect

SEEDED = 200  # MLSP_SEED_ITEMS of the local seed step
INVALID = ["../x", "a/b", "digit 1", "x" * 65, ""]


class DataCacheUser(FastHttpUser):
    wait_time = between(0.0, 0.01)

    @task(20)
    def known(self) -> None:
        item_id = f"digit-{random.randint(1, SEEDED):04d}"
        with self.client.post(
            "/predict/item", json={"item_id": item_id}, name="/predict/item", catch_response=True
        ) as resp:
            expect(resp, 200)
            if resp.status_code == 200 and resp.headers.get("x-cache") not in (
                "HIT",
                "MISS",
                "BYPASS",
            ):
                resp.failure(f"X-Cache missing or unknown: {resp.headers.get('x-cache')!r}")

    @task(2)
    def unknown_is_404(self) -> None:
        item_id = f"digit-{random.randint(SEEDED + 1, 9999):04d}"
        with self.client.post(
            "/predict/item",
            json={"item_id": item_id},
            name="/predict/item (unknown)",
            catch_response=True,
        ) as resp:
            expect(resp, 404)

    @task(1)
    def invalid_is_422(self) -> None:
        with self.client.post(
            "/predict/item",
            json={"item_id": random.choice(INVALID)},
            name="/predict/item (invalid)",
            catch_response=True,
        ) as resp:
            expect(resp, 422)
