"""Prometheus metrics shared by every service (names from docs/catalogue.md).

With several worker processes, set PROMETHEUS_MULTIPROC_DIR to an emptyDir and /metrics
aggregates every process (prometheus-client's multiprocess mode).
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as mp

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter("mlsp_requests", "HTTP requests served.", ["service", "route", "status"])
REQUEST_DURATION = Histogram(
    "mlsp_request_duration_seconds",
    "HTTP request latency.",
    ["service", "route"],
    buckets=LATENCY_BUCKETS,
)
INFERENCE_DURATION = Histogram(
    "mlsp_inference_duration_seconds",
    "Model call latency.",
    ["service", "model"],
    buckets=LATENCY_BUCKETS,
)
MODEL_INFO = Gauge(
    "mlsp_model_info",
    "The model being served (value 1).",
    ["service", "name", "version", "sha256"],
    multiprocess_mode="max",
)
DEPENDENCY_UP = Gauge(
    "mlsp_dependency_up",
    "1 when a dependency answers, else 0.",
    ["service", "dependency"],
    multiprocess_mode="min",
)
# The job queue (serving/queue.py): asynchronous, sync_async, prediction_log.
QUEUE_DEPTH = Gauge(
    "mlsp_queue_depth",
    "Jobs in the stream (waiting or in flight).",
    ["queue"],
    multiprocess_mode="max",
)
QUEUE_PENDING = Gauge(
    "mlsp_queue_pending",
    "Jobs delivered to a worker and not yet acknowledged.",
    ["queue"],
    multiprocess_mode="max",
)
JOBS = Counter("mlsp_jobs", "Jobs finished, by outcome (done, failed, dead).", ["queue", "outcome"])
JOB_LATENCY = Histogram(
    "mlsp_job_latency_seconds",
    "From enqueue to a terminal state.",
    ["queue"],
    buckets=(*LATENCY_BUCKETS, 10.0, 30.0, 60.0, 300.0),
)
JOB_RETRIES = Counter("mlsp_job_retries", "Deliveries after the first (reclaims).", ["queue"])
DEAD_LETTERS = Counter("mlsp_dead_letters", "Jobs moved to the dead-letter stream.", ["queue"])
QUEUE_DISCARDED = Counter(
    "mlsp_queue_discarded",
    "Stream entries acknowledged without running (copied to the dead-letter stream), by reason: "
    "malformed (no job id) or orphaned (the job's record is gone).",
    ["queue", "reason"],
)
REVISIONS = Counter(
    "mlsp_revisions",
    "Final answers compared with a fast answer (revised=true when the label changed).",
    ["pattern", "revised"],
)
READY = Gauge("mlsp_ready", "1 when the service is ready.", ["service"], multiprocess_mode="min")


def render() -> tuple[bytes, str]:
    """The exposition text of this process, or of every process in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
