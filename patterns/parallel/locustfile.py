"""Load for parallel: iris rows and batches fanned out to the three one-vs-rest backends (a
complete answer expected: partial false under require_all), and bad input (422).

The proxy serves /predict only (no Open Inference Protocol route): bench.users.PredictUser.

make loadtest PATTERN=parallel SECONDS=30 USERS=20
"""

from __future__ import annotations

from typing import Any

from bench.users import PredictUser


class ParallelUser(PredictUser):
    def check(self, resp: Any) -> None:
        """200 with every backend's score, nothing missing."""
        if resp.status_code != 200:
            resp.failure(f"expected 200, got {resp.status_code}")
        elif resp.json()["partial"]:
            resp.failure(f"partial answer, missing {resp.json()['missing']}")
        else:
            resp.success()
