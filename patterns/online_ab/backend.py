"""online_ab, a variant: one model server (the shared API, docs/catalogue.md); variant A runs
iris-svc and variant B iris-rf, MLSP_MODEL_DIR picking the model.

    MLSP_MODEL_DIR=data/models/iris-rf python -m patterns.online_ab.backend
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("online_ab"))
