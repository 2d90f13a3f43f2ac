"""prep_pred, `pred`: the model server, tensors only (ONNX Runtime behind the Open Inference
Protocol; the role of the deprecated ONNX Runtime Server).

With MLSP_REQUIRE_CONTRACT=true every infer request must carry the preprocessing version the
model was trained for (`parameters.preprocess_version`), FP32 and shape [n, 64]; anything else
is 422 `skew` (serving/oip.py). No image decoding happens here: that is `prep`'s job.

    MLSP_MODEL_DIR=data/models/digits-lr MLSP_REQUIRE_CONTRACT=true \
        python -m patterns.prep_pred.pred
"""

import sys

from serving.server import serve_model

if __name__ == "__main__":
    sys.exit(serve_model("prep_pred"))
