"""Load for prediction_log: iris predictions (each one logged), feedback for some of them
(first posts and replays), bad feedback.

make loadtest PATTERN=prediction_log SECONDS=30 USERS=20
"""

from __future__ import annotations

import random
import uuid

from locust import task

from bench.users import IrisUser, expect, row


class PredictionLogUser(IrisUser):
    def on_start(self) -> None:
        self.answered: list[str] = []

    @task(10)
    def predict_logged(self) -> None:
        rid = str(uuid.uuid4())
        with self.client.post(
            "/predict",
            json={"instances": [row()]},
            headers={"X-Request-ID": rid},
            catch_response=True,
        ) as resp:
            expect(resp, 200)
            if resp.status_code == 200 and len(self.answered) < 1000:
                self.answered.append(rid)

    @task(3)
    def feedback(self) -> None:
        if not self.answered:
            return
        rid = random.choice(self.answered)  # sometimes a replay: still 202
        with self.client.post(
            "/feedback", json={"request_id": rid, "outcome": "setosa"}, catch_response=True
        ) as resp:
            expect(resp, 202)

    @task(1)
    def bad_feedback_is_422(self) -> None:
        with self.client.post("/feedback", json={"request_id": "x"}, catch_response=True) as resp:
            expect(resp, 422)
