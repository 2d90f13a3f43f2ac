"""pipeline_training: serve the candidate the training Job registered, as the loader fetched it.

The `model-loader` init step resolved `models:/iris-rf@candidate` to a registry version and
verified it; this server reports that version, and the card's `mlflow_run_id`, `git_sha` and
`data_hash` in /metadata: the start of the lineage `python -m patterns.pipeline_training.lineage`
follows back to the training run. Manifest: manifests/patterns/pipeline_training/.

    python -m patterns.pipeline_training.app
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("pipeline_training"))
