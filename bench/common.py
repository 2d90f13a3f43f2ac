"""What the benchmark scripts share: the databases they use by default and how each one ends
(its targets printed as met or not, its results written to bench-results/)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

POSTGRES = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
"""The PostgreSQL a benchmark creates its scratch database in (DATABASE_URL, as the tests)."""
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")


def finish(results: dict[str, Any], targets: dict[str, bool], out: Path) -> int:
    """Print each target as met or NOT met and write results and targets as JSON to `out`."""
    print("targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": results, "targets": targets}, indent=2) + "\n")
    return 0


def post_script(body: bytes) -> Path:
    """A wrk Lua script that POSTs `body` as JSON (the caller unlinks the file)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(
            f"wrk.method = 'POST'\nwrk.body = '{body.decode()}'\n"
            "wrk.headers['Content-Type'] = 'application/json'\n"
        )
        return Path(fh.name)
