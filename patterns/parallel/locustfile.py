"""Load for parallel: iris rows and batches fanned out to the three one-vs-rest backends (a
complete answer expected: partial false under require_all), and bad input (422).

The proxy serves /predict only (no Open Inference Protocol route), so this user does not
subclass bench.users.IrisUser.

make loadtest PATTERN=parallel SECONDS=30 USERS=20
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, between, task

from bench.users import expect, row


def complete(resp: Any) -> None:
    """200 with every backend's score, nothing missing."""
    if resp.status_code != 200:
        resp.failure(f"expected 200, got {resp.status_code}")
    elif resp.json()["partial"]:
        resp.failure(f"partial answer, missing {resp.json()['missing']}")
    else:
        resp.success()


class ParallelUser(FastHttpUser):
    wait_time = between(0.0, 0.01)

    @task(20)
    def predict_one(self) -> None:
        with self.client.post("/predict", json={"instances": [row()]}, catch_response=True) as resp:
            complete(resp)

    @task(4)
    def predict_batch(self) -> None:
        rows = [row() for _ in range(random.randint(2, 32))]
        with self.client.post(
            "/predict", json={"instances": rows}, name="/predict batch", catch_response=True
        ) as resp:
            complete(resp)

    @task(1)
    def bad_input_is_422(self) -> None:
        with self.client.post(
            "/predict",
            json={"instances": [[5.0, 3.4]]},
            name="/predict bad input",
            catch_response=True,
        ) as resp:
            expect(resp, 422)
