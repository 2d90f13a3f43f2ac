"""model_load: serve the model version the `model-loader` init step fetched and verified.

The loader (`python -m serving.loader`) resolved `MLSP_MODEL_URI` (an alias such as
`models:/iris-svc@production`) to a concrete registry version and wrote it to MLSP_MODEL_DIR;
this server loads it, re-checks sha256 and the golden examples, and reports that concrete
version in /metadata, /metrics and every response. One image serves any model.
Manifest: manifests/patterns/model_load/.

    python -m patterns.model_load.app
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("model_load"))
