"""sync_async, the heavy model: the asynchronous pattern's queue worker with digits-svc. A job
that carries the fast answer's labels gets `revised` in its result (and mlsp_revisions_total).

    python -m patterns.sync_async.worker
"""

from __future__ import annotations

import sys

from serving.jobs import serve_worker

if __name__ == "__main__":
    sys.exit(serve_worker("sync_async"))
