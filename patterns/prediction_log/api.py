"""prediction_log, the api: the shared API's POST /predict (iris-svc, with each row's
outlier score from iris-ocsvm, both ONNX in this process), and every answered prediction
appended to a Redis stream for the log-writer.

- The answer is computed first; its log entry goes into an in-process buffer (a deque, bounded
  by MLSP_LOG_BUFFER) and the request is answered. A thread of its own appends what the
  buffer holds every MLSP_LOG_LINGER_MS (20) as one stream entry (up to MLSP_LOG_BATCH rows),
  in one round trip bounded by MLSP_APPEND_TIMEOUT_MS (50). So logging adds no Redis round
  trip to a request, and one per 20 ms to the process.
- Redis down, slow, or the stream's backlog above MLSP_MAX_BACKLOG (the writer is behind):
  each entry becomes one JSON line on stdout with `"spilled": true` and the row, counted in
  `mlsp_predlog_spilled_total{reason}`; a full buffer spills at once. Only a failing stdout
  loses an entry, counted in `mlsp_predlog_dropped_total`. Redis is never in /readyz and never
  fails a prediction.
- Sampling (MLSP_SAMPLE_RATE, by request id) and redaction (MLSP_REDACT_FEATURES: feature names,
  null in the logged input).
- POST /feedback {request_id, outcome}: stored once per request id in `feedback` (202 with
  `joined`: whether the prediction is already in the log); the same outcome again is a replay
  (202), another outcome for the same id is 422 naming `outcome`. The database is a hard
  dependency of /feedback only (503 naming it), not of /predict nor of /readyz.

    MLSP_REDIS_URL=redis://127.0.0.1:6379/0 python -m patterns.prediction_log.api
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr, TypeAdapter, ValidationError
from redis.exceptions import RedisError

from patterns.prediction_log import record
from patterns.prediction_log.record import PATTERN, LogDbSettings
from serving import redis_client
from serving.app import answer, create_app
from serving.db import Db, Store
from serving.errors import InvalidInput
from serving.inference import (
    ERRORS,
    invalid_from_pydantic,
    json_response,
    parse_instances,
    prediction_body,
    read_body,
    to_matrix,
)
from serving.middleware import FastHandler, FastResult
from serving.model import ModelCard, ModelError, Prediction
from serving.predictor import Batch, Call, OnnxPredictor, Wrapper
from serving.predlog import SCHEMA
from serving.settings import RedisSettings, ServingSettings
from serving.state import ServiceState
from serving.stream import LogStream

log = logging.getLogger("prediction_log")
NUMPY = orjson.OPT_SERIALIZE_NUMPY


class ApiSettings(ServingSettings, LogDbSettings, RedisSettings):
    """The api: the classifier and the outlier model, the log's stream, the feedback table."""

    outlier_model_dir: Path = Path("data/models/iris-ocsvm")
    """Folder of the outlier model (iris-ocsvm) scored beside the classifier."""
    sample_rate: float = Field(1.0, ge=0.0, le=1.0)
    """Fraction of predictions logged, chosen by request id (the same id always in or out)."""
    redact_features: str = ""
    """Comma-separated feature names logged as null (the model still sees them)."""
    append_timeout_ms: float = Field(50.0, gt=0, le=10_000)
    """Longest one append to the stream may take; past it the entries are spilled to stdout."""
    log_batch: int = Field(500, ge=1, le=10_000)
    """Most rows in one stream entry (one XADD: what was buffered since the last one)."""
    log_linger_ms: float = Field(20.0, ge=0, le=1000)
    """How often the buffer is appended to the stream: what arrived meanwhile goes in one
    entry, one round trip (not one per request)."""
    log_buffer: int = Field(10_000, ge=1, le=1_000_000)
    """Entries waiting to be appended above which new ones are spilled at once."""
    max_backlog: int = Field(100_000, ge=1)
    """Stream length (entries the writer has not stored, each up to MLSP_LOG_BATCH rows) above
    which rows are spilled instead of appended: Redis memory stays bounded while the writer is
    down."""
    feedback_max_bytes: int = Field(4096, ge=256, le=1 << 20)
    """Largest POST /feedback body (413 above)."""
    statement_timeout_ms: int = 2_000
    connect_timeout_seconds: int = 2


class ScoredPredictor(Wrapper):
    """The classifier, with the outlier model loaded and verified beside it."""

    def __init__(self, settings: ApiSettings) -> None:
        super().__init__(OnnxPredictor(settings))
        self.outlier = OnnxPredictor(
            settings.model_copy(update={"model_dir": settings.outlier_model_dir})
        )
        self.redact_names = [n.strip() for n in settings.redact_features.split(",") if n.strip()]
        self.redacted: list[int] = []

    async def load(self) -> None:
        await self.inner.load()
        await self.outlier.load()
        card = self.inner.card
        unknown = sorted(set(self.redact_names) - set(card.feature_names))
        if unknown:
            raise ModelError(
                f"MLSP_REDACT_FEATURES names {unknown}, not features of {card.name} "
                f"({', '.join(card.feature_names)})"
            )
        self.redacted = [card.feature_names.index(n) for n in self.redact_names]

    def not_ready(self) -> str | None:
        return self.inner.not_ready() or self.outlier.not_ready()

    async def outlier_scores(self, x: Batch, call: Call) -> list[float]:
        out: Prediction = await self.outlier.predict(x, call)
        return [float(s[0]) for s in out.scores]


REDIS_RETRY_SECONDS = 1.0
"""How long the appender spills without trying Redis after an append failed."""


class Appender:
    """The buffer between answered predictions and the stream (module docstring).

    The appends run on an event loop of their own, in a thread: the 50 ms bound then measures
    Redis, not the server's loop (at saturation one turn of that loop can take longer than
    50 ms, and every append would time out and spill). The buffer is a deque, safe to append
    to from the server's thread and to pop from this one."""

    def __init__(self, settings: ApiSettings) -> None:
        self.s = settings
        self.buffer: collections.deque[dict[str, Any]] = collections.deque()
        self.backlog = 0
        self.service = settings.service
        self._static = {"level": "warning", "service": settings.service, "pattern": PATTERN}
        self._down_until = 0.0
        """After a failed append, rows are spilled without trying Redis until then: a Redis
        that is down costs one attempt per REDIS_RETRY_SECONDS, not one per flush."""

    def offer(self, row: dict[str, Any]) -> None:
        """Queue one entry for the stream (never blocks, never raises)."""
        if len(self.buffer) >= self.s.log_buffer:
            self.spill([row], "buffer_full")
            return
        self.buffer.append(row)

    def spill(self, rows: list[dict[str, Any]], reason: str) -> None:
        """One `"spilled": true` JSON line per row on stdout (the row kept, counted)."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        head = {"ts": now, **self._static, "event": "prediction log spilled"}
        try:
            out = sys.stdout.buffer
            lines = [
                orjson.dumps({**head, "spilled": True, "reason": reason, "row": row},
                             option=NUMPY, default=str)
                for row in rows
            ]  # fmt: skip
            sys.stdout.flush()
            out.write(b"\n".join(lines) + b"\n")
            out.flush()
        except (OSError, ValueError):  # stdout closed or broken: the one way to lose entries
            record.DROPPED.labels(self.service).inc(len(rows))
            return
        record.SPILLED.labels(self.service, reason).inc(len(rows))

    async def flush_once(self, stream: LogStream) -> None:
        """Append up to `log_batch` buffered rows as one stream entry (`rows`: a JSON array,
        `n`: how many), or spill them."""
        batch = [self.buffer.popleft() for _ in range(min(len(self.buffer), self.s.log_batch))]
        if not batch:
            return
        if self.backlog >= self.s.max_backlog:
            self.spill(batch, "backlog_full")
            with contextlib.suppress(TimeoutError, RedisError, OSError):
                self.backlog = await stream.append_many([], self.s.append_timeout_ms / 1000)
            return
        try:
            payload = orjson.dumps(batch, option=NUMPY)
        except TypeError:  # a bug in building the row: the line keeps it (default=str)
            log.exception("log entry not encodable")
            self.spill(batch, "unencodable")
            return
        entry: dict[str, bytes | str] = {record.ROWS: payload, record.COUNT: str(len(batch))}
        if time.monotonic() < self._down_until:
            self.spill(batch, "redis_unavailable")
            return
        try:
            self.backlog = await stream.append_many([entry], self.s.append_timeout_ms / 1000)
        except (TimeoutError, RedisError, OSError) as exc:
            self._down_until = time.monotonic() + REDIS_RETRY_SECONDS
            self.spill(batch, "redis_unavailable")
            log.debug("append failed", extra={"error": repr(exc)[:200]})
            return
        record.APPENDED.labels(self.service).inc(len(batch))

    async def run(self, stopping: Callable[[], bool]) -> None:
        """Append (in the appender's thread) until `stopping()`, then what is left."""
        with ThreadPoolExecutor(1, thread_name_prefix="predlog-append") as pool:
            await asyncio.get_running_loop().run_in_executor(
                pool, lambda: asyncio.run(self._pump(stopping))
            )

    async def _pump(self, stopping: Callable[[], bool]) -> None:
        s = self.s
        within = s.append_timeout_ms / 1000
        client = redis_client.connect(
            s.redis_url, connect_timeout=within, timeout=within, max_connections=2
        )
        stream = LogStream(client, PATTERN)
        linger = max(s.log_linger_ms / 1000, 0.005)
        try:
            while not stopping():
                await asyncio.sleep(linger)  # what arrives meanwhile goes in the same XADD
                while self.buffer:
                    await self.flush_once(stream)
                    if len(self.buffer) < s.log_batch:
                        break
            while self.buffer:
                await self.flush_once(stream)
        finally:
            await client.aclose()


def entry(
    rid: str,
    card: ModelCard,
    rows: list[list[float]],
    preds: list[dict[str, Any]],
    scores: list[float],
    latency_ms: float,
    predictor: ScoredPredictor,
    rate: float,
) -> dict[str, Any]:
    """The log row of one answered request (serving/predlog.py's columns)."""
    run = getattr(card, "mlflow_run_id", None)
    return {
        "request_id": rid,
        "ts": time.time(),
        "model_name": card.name,
        "model_version": card.version,
        "training_run": run if isinstance(run, str) and run else None,
        "input": record.redact(rows, predictor.redacted),
        "output": preds,
        "latency_ms": round(latency_ms, 3),
        "outlier_score": min(scores) if scores else None,
        "sample_rate": rate,
    }


def logged_predict(predictor: ScoredPredictor, appender: Appender) -> Any:
    """POST /predict: the shared API's answer plus each row's outlier score; then the entry."""

    def make(state: ServiceState) -> FastHandler:
        s = state.settings
        rate = appender.s.sample_rate

        async def handle(body: bytes, rid: str, log_extra: dict[str, Any]) -> FastResult:
            started = time.perf_counter()
            state.ready()
            card = predictor.card
            rows = parse_instances(body)
            x = to_matrix(rows, card.n_features, s.max_batch)
            call = Call(rid, log_extra)
            out = await predictor.predict(x, call)
            scores = await predictor.outlier_scores(x, call)
            answer_body = prediction_body(rid, card, out)
            preds = answer_body["predictions"]
            for pred, score in zip(preds, scores, strict=True):
                pred["outlier_score"] = score
                pred["outlier"] = score < 0
            result = answer(call, card.version, answer_body)
            if record.sampled(rid, rate):
                latency = (time.perf_counter() - started) * 1000
                appender.offer(entry(rid, card, rows, preds, scores, latency, predictor, rate))
            else:
                record.SAMPLED_OUT.labels(appender.service).inc()
            return result

        return handle

    return make


Id = Annotated[StrictStr, Field(min_length=1, max_length=128, pattern=r"^[!-~]+$")]


class FeedbackIn(BaseModel):
    """An outcome observed after the fact, for a request the api answered."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"request_id": "6b5cceb8-2bc0-4cac-8dc0-14dcd4624645", "outcome": "setosa"}
            ]
        },
    )

    request_id: Id
    """The answered request's X-Request-ID."""
    outcome: Annotated[StrictStr, Field(min_length=1, max_length=256, pattern=r"^[^\x00]*$")]
    """What actually happened (a label, a value as text)."""


FEEDBACK = TypeAdapter(FeedbackIn)
SAVE = (
    "INSERT INTO feedback (request_id, outcome, ts) VALUES (%s, %s, %s)"
    " ON CONFLICT (request_id) DO NOTHING"
)
STORED = "SELECT outcome FROM feedback WHERE request_id = %s"
JOINED = "SELECT 1 FROM prediction_log WHERE request_id = %s"


def save_feedback(db: Db, fb: FeedbackIn, schema: list[bool]) -> tuple[str, bool, bool]:
    """(the stored outcome, whether this call stored it, whether the prediction is logged).
    `schema` is [True] once this process created the tables."""
    if not schema[0]:
        db.create_schema(SCHEMA)
        schema[0] = True
    db.begin()
    try:
        created = db.execute(SAVE, (fb.request_id, fb.outcome, time.time())).rowcount == 1
        stored = db.execute(STORED, (fb.request_id,)).fetchone()[0]
        joined = db.execute(JOINED, (fb.request_id,)).fetchone() is not None
        db.commit()
    except BaseException:
        db.rollback()
        raise
    return str(stored), created, joined


def build(settings: ApiSettings) -> FastAPI:
    appender = Appender(settings)
    predictor = ScoredPredictor(settings)
    store = Store(settings, service=settings.service)
    schema = [False]

    def extend(app: FastAPI, state: ServiceState) -> None:
        app.state.appender = appender

        async def append() -> None:
            await appender.run(lambda: state.draining)

        state.background.append(append)

        @app.post(
            "/feedback",
            status_code=202,
            tags=["feedback"],
            summary="Record the outcome of an answered request, once per request id",
            responses={k: v for k, v in ERRORS.items() if k in (400, 413, 415, 422, 503)},
            openapi_extra={
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": FeedbackIn.model_json_schema()}},
                }
            },
        )
        async def feedback(request: Request) -> Response:
            body = await read_body(request, settings.feedback_max_bytes)
            try:
                fb = FEEDBACK.validate_json(body)
            except ValidationError as exc:
                raise invalid_from_pydantic(exc) from None
            stored, created, joined = await store.run(lambda db: save_feedback(db, fb, schema))
            if stored != fb.outcome:
                raise InvalidInput(
                    [("outcome", f"request {fb.request_id} already has the outcome {stored!r}")]
                )
            return json_response(
                {
                    "request_id": fb.request_id,
                    "outcome": stored,
                    "joined": joined,
                    "replayed": not created,
                },
                202,
            )

    return create_app(
        settings, extend=extend, predictor=predictor, predict=logged_predict(predictor, appender)
    )


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern(PATTERN, ApiSettings, build))
