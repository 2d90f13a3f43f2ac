"""The webhook an Alertmanager notifies in a local run (patterns/alerting.py): it keeps the
alerts it is sent, so a person (or a test) can see that an alert really went all the way
from a gauge through Prometheus and Alertmanager to a receiver.

POST /alerts   Alertmanager's webhook payload (version 4); each alert is logged as a JSON line
               (event `alert`) and kept, newest first, up to MLSP_KEEP_ALERTS.
GET  /alerts   {"notifications": n, "alerts": [{status, alertname, severity, labels,
               annotations, starts_at, received_at}, ...]}

In a cluster the same payload goes to whatever the team uses (a chat webhook, a pager); this
stands in for it and holds nothing across restarts.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from typing import Any

from fastapi import FastAPI
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from serving.app import create_app
from serving.inference import ERRORS, json_response
from serving.settings import ServingSettings
from serving.state import ServiceState

log = logging.getLogger("patterns.alert_receiver")


class ReceiverSettings(ServingSettings):
    keep_alerts: int = Field(1000, ge=1, le=100_000)
    """Alerts kept in memory for GET /alerts (the oldest go first)."""


Labels = dict[str, str]


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")
    status: str = Field(max_length=16)
    labels: Labels = Field(max_length=64)
    annotations: Labels = Field(default_factory=dict, max_length=64)
    startsAt: str = Field("", max_length=64)  # Alertmanager's field name
    fingerprint: str = Field("", max_length=64)


class WebhookPayload(BaseModel):
    """The part of Alertmanager's webhook body (version 4) this receiver reads."""

    model_config = ConfigDict(extra="ignore")
    version: str = Field(max_length=8)
    status: str = Field(max_length=16)
    receiver: str = Field("", max_length=256)
    alerts: list[WebhookAlert] = Field(max_length=1000)


def build(settings: ReceiverSettings) -> FastAPI:
    kept: deque[dict[str, Any]] = deque(maxlen=settings.keep_alerts)
    notifications = [0]

    def extend(app: FastAPI, _state: ServiceState) -> None:
        @app.post("/alerts", tags=["alerts"], summary="Alertmanager's webhook", responses=ERRORS)
        async def receive(payload: WebhookPayload) -> Response:
            notifications[0] += 1
            now = time.time()
            for alert in payload.alerts:
                entry = {
                    "status": alert.status,
                    "alertname": alert.labels.get("alertname", ""),
                    "severity": alert.labels.get("severity", ""),
                    "labels": alert.labels,
                    "annotations": alert.annotations,
                    "starts_at": alert.startsAt,
                    "received_at": round(now, 3),
                }
                kept.appendleft(entry)
                log.info("alert", extra=entry)
            return json_response({"received": len(payload.alerts)})

        @app.get("/alerts", tags=["alerts"], summary="The alerts received, newest first")
        async def received() -> Response:
            return json_response({"notifications": notifications[0], "alerts": list(kept)})

    return create_app(settings, needs_model=False, extend=extend)


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern("prediction_monitoring", ReceiverSettings, build))
