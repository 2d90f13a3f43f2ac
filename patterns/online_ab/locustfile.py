"""Load for online_ab: users (a pool per locust user) sending iris rows with X-User-ID, each
answer checked for the variant that user had before (sticky) and the model of that variant,
outcomes posted for them, reads of the report, and bad input (422, no variant charged).

make loadtest PATTERN=online_ab SECONDS=30 USERS=20
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from locust import FastHttpUser, between, task

from bench.users import bad_input, expect, row

MODELS = {"a": "iris-svc", "b": "iris-rf"}


class AbUser(FastHttpUser):
    wait_time = between(0.0, 0.01)

    def on_start(self) -> None:
        self.users = [f"load-{uuid.uuid4().hex[:12]}" for _ in range(20)]
        self.seen: dict[str, str] = {}

    def check(self, resp: Any, user: str) -> None:
        variant = resp.headers.get("x-variant")
        if resp.status_code != 200:
            resp.failure(f"expected 200, got {resp.status_code}")
        elif resp.json()["model"]["name"] != MODELS.get(variant or ""):
            resp.failure(f"variant {variant} answered by {resp.json()['model']['name']}")
        elif self.seen.setdefault(user, variant or "") != variant:
            resp.failure(f"{user} moved from {self.seen[user]} to {variant}")
        else:
            resp.success()

    @task(10)
    def predict(self) -> None:
        user = random.choice(self.users)
        with self.client.post(
            "/predict", json={"instances": [row()]}, headers={"X-User-ID": user},
            catch_response=True,
        ) as resp:  # fmt: skip
            self.check(resp, user)

    @task(3)
    def outcome(self) -> None:
        if not self.seen:
            return
        user = random.choice(list(self.seen))
        with self.client.post(
            "/outcomes", json={"user_id": user, "value": random.randint(0, 1)},
            catch_response=True,
        ) as resp:  # fmt: skip
            expect(resp, 200)

    @task(1)
    def report(self) -> None:
        self.client.get("/ab/report")

    @task(1)
    def bad_input_is_422(self) -> None:
        bad_input(self.client)
