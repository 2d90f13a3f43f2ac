"""Load for parameter_based: iris rows and batches through the parameter proxy (each answer
must carry the parameters' digest and, while switched on, one label per row: a class or
`abstain`), bad input (422), and reads of the parameters being served.

make loadtest PATTERN=parameter_based SECONDS=30 USERS=20
"""

from __future__ import annotations

from typing import Any

from locust import task

from bench.users import PredictUser


class ParameterUser(PredictUser):
    def check(self, resp: Any) -> None:
        """200 with the parameters' digest; labels unless the kill switch is on."""
        if resp.status_code != 200:
            resp.failure(f"expected 200, got {resp.status_code}")
            return
        body = resp.json()
        if (
            not body.get("parameters")
            or resp.headers.get("x-parameters-digest") != body["parameters"]
        ):
            resp.failure("no parameters digest")
        elif body["status"] == "ok" and not all(p.get("label") for p in body["predictions"]):
            resp.failure("a row without a label")
        else:
            resp.success()

    @task(1)
    def parameters(self) -> None:
        self.client.get("/parameters")
