"""Load for prep_pred: digit images of varied sizes and formats through prep, and non-image
bodies that prep must refuse with 415 before pred is called.

make loadtest PATTERN=prep_pred SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from bench.users import digits_row, expect
from serving.preprocessing import render_digit

NOT_IMAGES = [
    (b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}', "application/json"),
    (b"GIF89a not what we take", "image/gif"),
    (b"just some text", "text/plain"),
]


class PrepPredUser(FastHttpUser):
    wait_time = between(0.0, 0.02)

    def post_image(self, data: bytes, content_type: str, name: str) -> None:
        with self.client.post(
            "/predict/image",
            data=data,  # type: ignore[arg-type]  # locust sends bytes as they are
            headers={"Content-Type": content_type},
            name=name,
            catch_response=True,
        ) as resp:
            expect(resp, 200)

    @task(10)
    def png_any_size(self) -> None:
        width = random.choice([8, 16, 28, 32, 64, 128, 256])
        height = random.choice([width, width, round(width * random.uniform(0.5, 1.5))])
        png = render_digit(digits_row(), width=width, height=max(8, height))
        self.post_image(png, "image/png", "/predict/image png")

    @task(3)
    def jpeg(self) -> None:
        jpeg = render_digit(digits_row(), width=300, height=200, fmt="JPEG")
        self.post_image(jpeg, "image/jpeg", "/predict/image jpeg")

    @task(1)
    def not_an_image_is_415(self) -> None:
        data, content_type = random.choice(NOT_IMAGES)
        with self.client.post(
            "/predict/image",
            data=data,  # type: ignore[arg-type]  # locust sends bytes as they are
            headers={"Content-Type": content_type},
            name="/predict/image not-an-image",
            catch_response=True,
        ) as resp:
            expect(resp, 415)
