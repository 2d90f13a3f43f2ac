"""asynchronous, the API: POST /jobs enqueues (202 + Location) before answering; GET /jobs/{id}
polls and GET /jobs/{id}/events pushes the result. It loads no model: Redis is its only
dependency. The queue is serving/queue.py.

    python -m patterns.asynchronous.api
"""

from __future__ import annotations

import sys

from serving.jobs import serve_job_api

if __name__ == "__main__":
    sys.exit(serve_job_api("asynchronous"))
