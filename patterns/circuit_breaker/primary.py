"""circuit_breaker, the primary: the shared model server (docs/catalogue.md) with iris-svc, the
dependency the proxy's breaker guards.

    MLSP_MODEL_DIR=data/models/iris-svc python -m patterns.circuit_breaker.primary
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("circuit_breaker"))
