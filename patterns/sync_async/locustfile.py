"""Load for sync_async: the fast answer per request, then the final one by polling.

make loadtest PATTERN=sync_async SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from bench.users import digit_png, digits_row, expect


class TimeDifferenceUser(FastHttpUser):
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.finals: list[str] = []

    @task(10)
    def predict(self) -> None:
        with self.client.post(
            "/predict", json={"instances": [digits_row()]}, catch_response=True
        ) as resp:
            expect(resp, 200, 202)
            if resp.status_code in (200, 202) and resp.json().get("final_url"):
                self.finals.append(resp.json()["final_url"])

    @task(2)
    def predict_image(self) -> None:
        with self.client.post(
            "/predict/image",
            data=digit_png(),  # type: ignore[arg-type]  # locust sends bytes as they are
            headers={"Content-Type": "image/png"},
            catch_response=True,
        ) as resp:
            expect(resp, 200, 202)

    @task(8)
    def final(self) -> None:
        if not self.finals:
            return
        url = random.choice(self.finals)
        with self.client.get(url, name="/jobs/{id}", catch_response=True) as resp:
            expect(resp, 200)
            if resp.status_code == 200 and resp.json()["status"] != "pending":
                self.finals.remove(url)
