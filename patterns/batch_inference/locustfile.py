"""Load for batch_inference's read-only API: item lookups and the summary.

make loadtest PATTERN=batch SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from bench.users import expect


class ResultsUser(FastHttpUser):
    wait_time = between(0.0, 0.02)

    @task(20)
    def item(self) -> None:
        item_id = random.randint(1, 10_000)
        with self.client.get(
            f"/predictions/{item_id}", name="/predictions/{id}", catch_response=True
        ) as resp:
            expect(resp, 200)

    @task(1)
    def summary(self) -> None:
        self.client.get("/summary")

    @task(1)
    def unknown_item_is_404(self) -> None:
        with self.client.get(
            "/predictions/999999999", name="/predictions/{unknown}", catch_response=True
        ) as resp:
            expect(resp, 404)
