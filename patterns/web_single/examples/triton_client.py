"""The public Triton client against web_single, in its default mode (binary tensors in and
out): the Open Inference Protocol v2 server needs no client of ours.

.venv/bin/python patterns/web_single/examples/triton_client.py http://127.0.0.1:8000
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as triton

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.3, 3.4, 5.6, 2.4]]


def main(url: str) -> None:
    client = triton.InferenceServerClient(url.removeprefix("http://"))
    meta = client.get_model_metadata("iris-svc")
    x = triton.InferInput("X", [len(ROWS), 4], "FP32")
    x.set_data_from_numpy(np.asarray(ROWS, dtype=np.float32))  # binary_data=True by default
    result = client.infer("iris-svc", [x])  # no outputs named: all, sent back as binary
    labels = meta["parameters"]["labels"]
    for row, class_id, scores in zip(
        ROWS, result.as_numpy("label"), result.as_numpy("probabilities"), strict=True
    ):
        probabilities = dict(zip(labels, (round(float(p), 4) for p in scores), strict=True))
        print(json.dumps({"row": row, "label": labels[class_id], "probabilities": probabilities}))
    sizes = [o["parameters"]["binary_data_size"] for o in result.get_response()["outputs"]]
    print(f"binary outputs: {sizes} bytes")
    client.close()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
