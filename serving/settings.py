"""Configuration from `MLSP_*` environment variables: the one settings root.

Every settings class of the project derives from `MlspSettings` (prefix `MLSP_`, unknown
variables ignored, each field's docstring its description). A field shared by several
processes is declared once, in a small mixin here or in the module that owns it (`redis_url`
in `RedisSettings`, `database_url` in serving/db.py), and a subclass only changes a default.
docs/settings.md lists every variable; `make docs` writes it (patterns/settings_doc.py) and a
test keeps it in sync.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlspSettings(BaseSettings):
    """The root: `MLSP_` variables, the field docstrings as descriptions."""

    model_config = SettingsConfigDict(
        env_prefix="MLSP_", extra="ignore", use_attribute_docstrings=True
    )


class ProcessSettings(MlspSettings):
    """What every long-running process says about itself in logs and metrics."""

    service: str = "model-server"
    """Name of this service in logs and metrics."""
    pattern: str = "web_single"
    """Pattern id this process belongs to, in logs."""
    log_level: str = "INFO"
    """Python logging level."""


class ModelDirSettings(MlspSettings):
    """Where a process finds (or, for the loader, writes) a model artifact."""

    model_dir: Path = Path("data/models/iris-svc")
    """Folder holding `model.onnx` and `model.json`."""


class ImageLimits(MlspSettings):
    """Limits on an image before it is decoded (serving/preprocessing.py)."""

    max_image_bytes: int = Field(5 << 20, ge=1024)
    """Largest image accepted, in bytes (413 above)."""
    max_image_side: int = Field(4096, ge=8)
    """Largest image width or height accepted, in pixels (413 above)."""


class RedisSettings(MlspSettings):
    """The Redis a queue or a cache uses."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL (`redis://host:port/db`); `make run` passes its own Redis's URL."""


class ConsumerSettings(MlspSettings):
    """A reader of a Redis Streams consumer group (the queue's workers, prediction_log's
    writers)."""

    consumer: str = ""
    """Consumer name in the group; default: the host (pod) name and pid."""
    consumer_idle_seconds: float = Field(600.0, gt=0)
    """A consumer of the group idle this long and holding no pending entry is removed (the names
    of workers that died; checked at every reclaim pass)."""


class RandomSeed(MlspSettings):
    seed: int = 0
    """Seed of every random choice (train/test split, estimators, generated data)."""


class ServingSettings(ProcessSettings, ModelDirSettings, ImageLimits):
    """Settings shared by every model server; patterns extend this class."""

    host: str = "127.0.0.1"
    """Address to bind; containers set 0.0.0.0."""
    port: int = Field(8000, ge=1, le=65535)
    """TCP port to listen on."""
    max_batch: int = Field(256, ge=1, le=10_000)
    """Most rows accepted in one prediction request."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    """Largest JSON body accepted (413 above)."""
    ort_intra_op_threads: int = Field(1, ge=1)
    """ONNX Runtime intra-op threads; its default uses every core and ignores CPU limits."""
    ort_inter_op_threads: int = Field(1, ge=1)
    """ONNX Runtime inter-op threads."""
    inference_offload: bool = False
    """Run inference in a worker thread; worth it only for slow models (digits-svc)."""
    max_inflight: int | None = Field(None, ge=1)
    """Prediction requests in progress above which the server answers 503 (unset: no limit);
    a request counts once its body is read."""
    queue_target_ms: float | None = Field(None, gt=0)
    """Shed prediction requests by queueing time (CoDel, serving/admission.py): when requests
    kept waiting longer than this before they ran, one that did gets 503 + Retry-After (unset:
    off)."""
    queue_interval_ms: float = Field(100.0, gt=0)
    """With MLSP_QUEUE_TARGET_MS: the CoDel interval; a request that waited longer than this
    before it ran is always shed."""
    max_header_bytes: int = Field(16384, ge=1024)
    """Largest request head (request line and headers) accepted, in bytes (431 above)."""
    max_headers: int = Field(100, ge=8)
    """Most header lines accepted in one request (431 above)."""
    header_timeout_seconds: float = Field(10.0, gt=0)
    """Longest wait for a request's headers, from the connection (on a kept-alive one, from the
    request's first byte): then 408 and the connection closed."""
    body_timeout_seconds: float = Field(30.0, gt=0)
    """Longest wait for a request's whole body once its headers are in: then 408 and the
    connection closed."""
    simulated_latency_ms: int = Field(0, ge=0, le=60_000)
    """Demo knob: extra time per model call, to play a slow or heavy model. Keep 0 in production."""
    require_contract: bool = False
    """Tensors only (prep_pred's `pred`): no /predict routes, and every OIP infer request must
    match the model card: `parameters.preprocess_version`, FP32, shape [n, features] (422 skew)."""
    model_wait_seconds: float = Field(0.0, ge=0)
    """How long to wait for a missing model file before exiting non-zero."""
    drain_delay_seconds: float = Field(5.0, ge=0)
    """After SIGTERM: seconds of still serving (with /readyz failing) before draining."""
    graceful_timeout_seconds: int = Field(20, ge=0)
    """After the delay: most seconds to wait for in-flight requests."""
    fast_path: bool = True
    """Serve POST /predict from the raw-ASGI fast path (same handler, no framework routing)."""
    otel: bool = False
    """Enable FastAPI's native OpenTelemetry instrumentation."""
    access_log: bool = True
    """Write one JSON log line per request."""


@lru_cache
def get_settings() -> ServingSettings:
    """The process-wide settings, read once on first use (never at import)."""
    return ServingSettings()
