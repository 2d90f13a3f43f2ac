"""serial, a stage: one model server (the shared API, docs/catalogue.md); MLSP_MODEL_DIR
picks the model (iris-ocsvm
for the outlier gate, iris-svc for the classifier), one image for every stage.

    MLSP_MODEL_DIR=data/models/iris-ocsvm python -m patterns.serial.stage
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("serial"))
