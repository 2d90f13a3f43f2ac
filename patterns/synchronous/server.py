"""synchronous, the server: the shared model server (digits-lr) with admission control.

It honours `X-Request-Deadline-Ms` (504 once the client's deadline passes, the work cancelled)
and sheds load above MLSP_MAX_INFLIGHT (503 + Retry-After) instead of queueing: a client
that waits must get an answer within its budget or a fast failure it can act on. Both live in
serving/admission.py and apply to every server; this pattern turns them on.

    python -m patterns.synchronous.server
"""

from __future__ import annotations

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("synchronous"))
