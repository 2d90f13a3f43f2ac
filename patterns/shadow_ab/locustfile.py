"""Load for shadow_ab: iris rows and batches through the proxy (every answer must be the
primary's, iris-svc, and say whether it was shadowed), bad input (422, neither model called),
and reads of the report.

make loadtest PATTERN=shadow_ab SECONDS=30 USERS=20
"""

from __future__ import annotations

from typing import Any

from locust import task

from bench.users import PredictUser


class ShadowUser(PredictUser):
    def check(self, resp: Any) -> None:
        """200 from the primary (never the shadow's answer), with X-Shadow."""
        if resp.status_code != 200:
            resp.failure(f"expected 200, got {resp.status_code}")
        elif resp.json()["model"]["name"] != "iris-svc":
            resp.failure(f"answered by {resp.json()['model']['name']}, not the primary")
        elif resp.headers.get("x-shadow") not in {"sampled", "not_sampled", "dropped"}:
            resp.failure("no X-Shadow header")
        else:
            resp.success()

    @task(1)
    def report(self) -> None:
        self.client.get("/shadow/report")
