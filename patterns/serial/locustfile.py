"""Load for serial: iris rows and batches through the outlier gate and the classifier, rows far
from every iris class that the gate must stop with label "unknown", and bad input (422).

The proxy serves /predict only (no Open Inference Protocol route): bench.users.PredictUser.

make loadtest PATTERN=serial SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import task

from bench.users import PredictUser

# Far from the three iris centres: iris-ocsvm scores these below 0.0.
OUTLIERS = [
    [7.0, 3.2, 4.7, 1.4],
    [4.5, 4.5, 6.5, 0.2],
    [8.5, 2.0, 1.0, 2.5],
    [3.0, 1.0, 5.0, 3.5],
]


class SerialUser(PredictUser):
    @task(3)
    def outlier_is_unknown(self) -> None:
        with self.client.post(
            "/predict",
            json={"instances": [random.choice(OUTLIERS)]},
            name="/predict outlier",
            catch_response=True,
        ) as resp:
            if resp.status_code != 200:
                resp.failure(f"expected 200, got {resp.status_code}")
            elif (label := resp.json()["predictions"][0]["label"]) != "unknown":
                resp.failure(f"an outlier got label {label!r}, not 'unknown'")
            else:
                resp.success()
