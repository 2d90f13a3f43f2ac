"""sync_async, the fast model: a plain model server (digits-lr) the proxy calls synchronously.

python -m patterns.sync_async.fast
"""

from __future__ import annotations

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("sync_async"))
