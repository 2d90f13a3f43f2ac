"""Locust users shared by the patterns that serve iris behind the shared API.

A pattern's locustfile subclasses `IrisUser` (and may add tasks): varied iris rows, batches of
1-32, some Open Inference Protocol v2 calls and some bad input that must be a 422; a proxy
that serves /predict only subclasses `PredictUser`.
"""

from __future__ import annotations

import random
from typing import Any

from locust import FastHttpUser, between, task

from serving.preprocessing import render_digit

# Centres of the three iris classes; rows are drawn around them.
CENTRES = [(5.0, 3.4, 1.5, 0.25), (5.9, 2.8, 4.3, 1.3), (6.6, 3.0, 5.6, 2.0)]


def row() -> list[float]:
    centre = random.choice(CENTRES)
    return [round(max(0.1, v + random.gauss(0, 0.25)), 2) for v in centre]


class IrisUser(FastHttpUser):
    abstract = True
    model = "iris-svc"
    wait_time = between(0.0, 0.01)

    @task(20)
    def predict_one(self) -> None:
        self.client.post("/predict", json={"instances": [row()]})

    @task(4)
    def predict_batch(self) -> None:
        self.client.post(
            "/predict", json={"instances": [row() for _ in range(random.randint(2, 32))]}
        )

    @task(2)
    def oip_infer(self) -> None:
        data = row()
        self.client.post(
            f"/v2/models/{self.model}/infer",
            json={"inputs": [{"name": "X", "shape": [1, 4], "datatype": "FP32", "data": data}]},
        )

    @task(1)
    def bad_input_is_422(self) -> None:
        with self.client.post(
            "/predict", json={"instances": [[1.0, 2.0, 3.0]]}, catch_response=True
        ) as resp:
            if resp.status_code == 422:
                resp.success()
            else:
                resp.failure(f"expected 422, got {resp.status_code}")


class PredictUser(FastHttpUser):
    """For a proxy that serves iris on /predict only (no Open Inference Protocol route): rows
    and batches of 1-32 judged by `check` (200 by default), and bad input that must be 422."""

    abstract = True
    wait_time = between(0.0, 0.01)

    def check(self, resp: Any) -> None:
        expect(resp, 200)

    @task(20)
    def predict_one(self) -> None:
        with self.client.post("/predict", json={"instances": [row()]}, catch_response=True) as resp:
            self.check(resp)

    @task(4)
    def predict_batch(self) -> None:
        rows = [row() for _ in range(random.randint(2, 32))]
        with self.client.post(
            "/predict", json={"instances": rows}, name="/predict batch", catch_response=True
        ) as resp:
            self.check(resp)

    @task(1)
    def bad_input_is_422(self) -> None:
        bad_input(self.client)


def bad_input(client: Any) -> None:
    """Three features where iris has four: the answer must be a 422."""
    with client.post(
        "/predict",
        json={"instances": [[1.0, 2.0, 3.0]]},
        name="/predict bad input",
        catch_response=True,
    ) as resp:
        expect(resp, 422)


def digits_row() -> list[float]:
    """An 8x8 digit as 64 values in 0..16 (a stroke on a blank grid, like the digits data)."""
    grid = [[0.0] * 8 for _ in range(8)]
    col = random.randint(2, 5)
    for r in range(1, 7):
        grid[r][col] = float(random.randint(10, 16))
        if random.random() < 0.3:
            grid[r][min(7, col + 1)] = float(random.randint(0, 12))
    return [v for line in grid for v in line]


def digit_png() -> bytes:
    """The same kind of digit as a 32x32 PNG."""
    return render_digit(digits_row())


def expect(resp: Any, *codes: int) -> None:
    """Mark a catch_response request as failed unless its status is one of `codes`."""
    if resp.status_code in codes:
        resp.success()
    else:
        resp.failure(f"expected {codes}, got {resp.status_code}")
