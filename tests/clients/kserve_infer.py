"""Run by .venv-kserve's Python (the KServe SDK cannot share the project's environment):
infer through `kserve.InferenceRESTClient` with the v2 protocol and the SDK's defaults
(binary input tensors), then in JSON, then a refused input; print one JSON line per call.

.venv-kserve/bin/python tests/clients/kserve_infer.py http://127.0.0.1:8000 iris-svc ROWS_JSON
"""

from __future__ import annotations

import asyncio
import json
import sys

import httpx
import numpy as np
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig


async def main(url: str, model: str, rows: list[list[float]]) -> None:
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=0, timeout=30))
    x = np.asarray(rows, dtype=np.float32)
    for binary in (True, False):
        tensor = InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        answer = await client.infer(url, InferRequest(model, [tensor]), model_name=model)
        outputs = {o.name: o.as_numpy().tolist() for o in answer.outputs}
        print(json.dumps({"binary": binary, "id": answer.id, "outputs": outputs}))
    bad = InferInput("Y", list(x.shape), "FP32")
    bad.set_data_from_numpy(x)
    try:
        await client.infer(url, InferRequest(model, [bad]), model_name=model)
    except httpx.HTTPStatusError as exc:
        print(json.dumps({"status": exc.response.status_code, "error": str(exc)}))
    await client.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3])))
