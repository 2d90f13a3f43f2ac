"""parallel, a backend: one model server (the shared API, docs/catalogue.md); MLSP_MODEL_DIR
picks the model, so the
three one-vs-rest iris models run from the same image and module.

    MLSP_MODEL_DIR=data/models/iris-ovr-setosa python -m patterns.parallel.backend
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("parallel"))
