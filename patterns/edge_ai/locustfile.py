"""Load for edge_ai's hub: a fleet of devices polling the manifest (most requests), some
downloading the model, whole or resumed with Range (206), and bad requests that must be 4xx
(an unknown model 404, a malformed name 422, an unpublished version 404).

make loadtest PATTERN=edge_ai SECONDS=30 USERS=20
"""

from __future__ import annotations

import random

from locust import FastHttpUser, between, task

from bench.users import expect

MODEL = "digits-lr"


class DeviceFleet(FastHttpUser):
    wait_time = between(0.0, 0.01)
    url = f"/edge/models/{MODEL}/versions/1/model.onnx"

    @task(20)
    def poll_manifest(self) -> None:
        with self.client.get(f"/edge/models/{MODEL}/manifest", catch_response=True) as resp:
            expect(resp, 200)
            if resp.status_code == 200 and resp.json():
                self.url = resp.json()["url"]

    @task(3)
    def download(self) -> None:
        with self.client.get(self.url, name="model.onnx", catch_response=True) as resp:
            expect(resp, 200)

    @task(3)
    def resume(self) -> None:
        start = random.randint(1, 4000)
        with self.client.get(
            self.url,
            headers={"Range": f"bytes={start}-"},
            name="model.onnx resumed",
            catch_response=True,
        ) as resp:
            expect(resp, 206)

    @task(1)
    def unknown_model_is_404(self) -> None:
        with self.client.get(
            "/edge/models/no-such-model/manifest", name="unknown model", catch_response=True
        ) as resp:
            expect(resp, 404)

    @task(1)
    def bad_name_is_422(self) -> None:
        with self.client.get(
            "/edge/models/Bad_Name!/manifest", name="bad name", catch_response=True
        ) as resp:
            expect(resp, 422)

    @task(1)
    def old_version_is_404(self) -> None:
        with self.client.get(
            f"/edge/models/{MODEL}/versions/999/model.onnx",
            name="unpublished version",
            catch_response=True,
        ) as resp:
            expect(resp, 404)
