"""Load for condition_based: each rule's traffic through the router (the `mountain` header,
a model pinned in the query, digit images, plain rows), each answer checked for the route it
must take (X-Route-Rule, X-Routed-To and the answering model), explanations, and bad input
(the backend's 422, relayed).

make loadtest PATTERN=condition_based SECONDS=30 USERS=20
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, between, task

from bench.users import bad_input, digit_png, row


class RouterUser(FastHttpUser):
    wait_time = between(0.0, 0.01)

    def routed(self, resp: Any, rules: set[str], model: str | None = None) -> None:
        rule, backend = resp.headers.get("x-route-rule"), resp.headers.get("x-routed-to")
        if resp.status_code != 200:
            resp.failure(f"expected 200, got {resp.status_code}")
        elif rule not in rules:
            resp.failure(f"rule {rule}, expected one of {sorted(rules)}")
        elif resp.json()["model"]["name"] != backend or (model and backend != model):
            resp.failure(f"routed to {backend}, answered by {resp.json()['model']['name']}")
        else:
            resp.success()

    @task(10)
    def plain_rows(self) -> None:
        rows = [row() for _ in range(random.choice((1, 1, 1, 8)))]
        with self.client.post("/predict", json={"instances": rows}, catch_response=True) as r:
            self.routed(r, {"default", "night"})  # by the router's clock

    @task(4)
    def mountain(self) -> None:
        with self.client.post(
            "/predict",
            json={"instances": [row()]},
            headers={"X-Target": "mountain"},
            name="/predict X-Target: mountain",
            catch_response=True,
        ) as r:
            self.routed(r, {"mountain"}, "iris-rf")

    @task(2)
    def pinned(self) -> None:
        with self.client.post(
            "/predict?model=iris-rf", json={"instances": [row()]}, catch_response=True
        ) as r:
            self.routed(r, {"pinned"}, "iris-rf")

    @task(4)
    def image(self) -> None:
        with self.client.post(
            "/predict/image",
            data=digit_png(),  # type: ignore[arg-type]  # locust sends bytes as they are
            headers={"Content-Type": "image/png"},
            catch_response=True,
        ) as r:
            self.routed(r, {"images"}, "digits-lr")

    @task(1)
    def explain(self) -> None:
        self.client.get("/routes/explain?at=23:30", name="/routes/explain")

    @task(1)
    def bad_input_is_422(self) -> None:
        bad_input(self.client)
