"""shadow_ab, a model server (the shared API, docs/catalogue.md): the primary (iris-svc) and
the shadow (iris-rf) run this module, MLSP_MODEL_DIR picking the model.

    MLSP_MODEL_DIR=data/models/iris-rf python -m patterns.shadow_ab.backend
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("shadow_ab"))
