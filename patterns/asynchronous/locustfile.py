"""Load for asynchronous: submit digit jobs (rows and PNGs), poll them, send some bad input.

make loadtest PATTERN=async SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from bench.users import digit_png, digits_row, expect


class AsyncUser(FastHttpUser):
    wait_time = between(0.0, 0.02)

    def on_start(self) -> None:
        self.tickets: list[str] = []

    @task(10)
    def submit_rows(self) -> None:
        with self.client.post(
            "/jobs", json={"instances": [digits_row()]}, catch_response=True
        ) as resp:
            expect(resp, 202)
            if resp.status_code == 202:
                self.tickets.append(resp.json()["job_id"])

    @task(2)
    def submit_image(self) -> None:
        with self.client.post(
            "/jobs",
            data=digit_png(),  # type: ignore[arg-type]  # locust sends bytes as they are
            headers={"Content-Type": "image/png"},
            catch_response=True,
        ) as resp:
            expect(resp, 202)

    @task(10)
    def poll(self) -> None:
        if not self.tickets:
            return
        job_id = random.choice(self.tickets)
        with self.client.get(f"/jobs/{job_id}", name="/jobs/{id}", catch_response=True) as resp:
            expect(resp, 200)
            if resp.status_code == 200 and resp.json()["status"] != "pending":
                self.tickets.remove(job_id)

    @task(1)
    def bad_input_is_422(self) -> None:
        with self.client.post(
            "/jobs", json={"instances": [[1.0, 2.0]]}, catch_response=True
        ) as resp:
            expect(resp, 422)
