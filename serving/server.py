"""Run an app under uvicorn with the project's graceful shutdown.

On SIGTERM (or Ctrl-C): /readyz fails at once so load balancers stop sending traffic, the server
keeps serving for `drain_delay_seconds` (endpoints take a moment to update), then stops
accepting, waits up to `graceful_timeout_seconds` for in-flight requests, and exits 0. A second
signal exits at once. A fatal model error exits 1.

The HTTP protocol is uvicorn's httptools one with the head limits and read deadlines it lacks
(serving/protocol.py); the server's tick sweeps those deadlines.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from serving.app import create_app
from serving.hotconfig import ConfigInvalid
from serving.logs import AccessLog, configure_logging
from serving.protocol import HttpLimits, LimitedHttpToolsProtocol
from serving.settings import ServingSettings, get_settings
from serving.state import ServiceState

log = logging.getLogger("serving")


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState, drain_delay: float) -> None:
        super().__init__(config)
        self.state = state
        self.drain_delay = drain_delay
        self.drain_started: float | None = None
        self.access_log: AccessLog | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in _captured_signals: uvicorn would re-raise it and the exit code
        # would be 143 instead of 0.
        if self.drain_started is None:
            self.drain_started = time.monotonic()
            self.state.draining = True
            log.info("draining", extra={"signal": sig, "delay_s": self.drain_delay})
        else:
            self.should_exit = True
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.access_log is not None:
            self.access_log.flush()
        if counter % 5 == 0:  # every 0.5 s: requests whose head or body is overdue
            now = time.perf_counter()
            for conn in list(self.server_state.connections):
                if isinstance(conn, LimitedHttpToolsProtocol):
                    conn.expire(now)
        if await super().on_tick(counter):
            return True
        started = self.drain_started
        return started is not None and time.monotonic() - started >= self.drain_delay


def serve(app: FastAPI, settings: ServingSettings) -> int:
    """Serve until stopped; returns the process exit code."""
    configure_logging(settings.service, settings.pattern, settings.log_level)
    state: ServiceState = app.state.service
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=LimitedHttpToolsProtocol.configured(
            HttpLimits(
                max_header_bytes=settings.max_header_bytes,
                max_headers=settings.max_headers,
                header_timeout=settings.header_timeout_seconds,
                body_timeout=settings.body_timeout_seconds,
            )
        ),
        lifespan="on",
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=settings.graceful_timeout_seconds,
        timeout_keep_alive=5,
    )
    server = GracefulServer(config, state, settings.drain_delay_seconds)
    server.access_log = getattr(app.state, "access_log", None)

    def stop() -> None:
        server.should_exit = True

    state.on_fatal = stop
    server.run()
    if server.access_log is not None:
        server.access_log.flush()
    if state.fatal:
        return 1
    log.info("stopped")
    return 0


S = TypeVar("S", bound=ServingSettings)


def serve_pattern(pattern: str, settings_type: type[S], build: Callable[[S], FastAPI]) -> int:
    """Entry point of a pattern's service: `pattern` is the default of MLSP_PATTERN (read by
    the settings), then the settings from the environment, the app, served. A configuration
    file the app refuses at start-up (serving/hotconfig.py) is one JSON line naming the field,
    and exit code 2, not a traceback: the file is what is wrong."""
    os.environ.setdefault("MLSP_PATTERN", pattern)
    settings = settings_type()
    try:
        app = build(settings)
    except ConfigInvalid as exc:
        print(json.dumps({"level": "ERROR", "event": "configuration refused", "reason": str(exc)}))
        return 2
    return serve(app, settings)


def serve_model(pattern: str) -> int:
    """Entry point of a single-model server: the shared API for the model in MLSP_MODEL_DIR.
    `pattern` is the default of MLSP_PATTERN (the pattern named in logs)."""
    os.environ.setdefault("MLSP_PATTERN", pattern)
    settings = get_settings()
    return serve(create_app(settings), settings)
