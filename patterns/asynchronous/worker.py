"""asynchronous, the worker: reads jobs from the Redis stream in consumer group `workers`,
scores each batch in one ONNX call (digits-svc by default), stores results exactly once, and
reclaims the jobs of crashed workers. /readyz and /metrics on its port.

    python -m patterns.asynchronous.worker
"""

from __future__ import annotations

import sys

from serving.jobs import serve_worker

if __name__ == "__main__":
    sys.exit(serve_worker("asynchronous"))
