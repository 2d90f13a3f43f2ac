"""Load for synchronous: the inspection line's requests, each with a 5 s deadline. Past
MLSP_MAX_INFLIGHT the server sheds load with 503 + Retry-After: counted as expected here, so
the report shows how much was shed rather than failing the run.

make loadtest PATTERN=sync SECONDS=30 USERS=50
"""

from __future__ import annotations

from locust import FastHttpUser, between, task

from bench.users import digit_png, digits_row, expect
from serving.admission import deadline_header


class LineUser(FastHttpUser):
    wait_time = between(0.0, 0.01)

    @task(5)
    def inspect_image(self) -> None:
        headers = {"Content-Type": "image/png", **deadline_header(5.0)}
        with self.client.post(
            "/predict/image",
            data=digit_png(),  # type: ignore[arg-type]  # locust sends bytes as they are
            headers=headers,
            catch_response=True,
        ) as resp:
            expect(resp, 200, 503)

    @task(5)
    def inspect_row(self) -> None:
        with self.client.post(
            "/predict",
            json={"instances": [digits_row()]},
            headers=deadline_header(5.0),
            catch_response=True,
        ) as resp:
            expect(resp, 200, 503)
