"""condition_based, a backend: one model server (the shared API, docs/catalogue.md);
MLSP_MODEL_DIR picks the model, so iris-svc, iris-rf and digits-lr run from the same module.

    MLSP_MODEL_DIR=data/models/iris-rf python -m patterns.condition_based.backend
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("condition_based"))
