"""The baseline `make bench` compares web_single with: raw ASGI + orjson + the same ONNX session.

No framework, no validation beyond what orjson and numpy do, no middleware, no logging: the
ceiling for this model on this server stack. Serves POST /predict and GET /readyz only.

    python -m bench.raw_asgi   (MLSP_MODEL_DIR, MLSP_PORT as for the real server)
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
import orjson
import uvicorn

from serving.middleware import read_asgi_body
from serving.model import OnnxModel
from serving.settings import get_settings

_settings = get_settings()
_model = OnnxModel.load(_settings.model_dir)
_labels = _model.card.labels
_meta = {"name": _model.card.name, "version": _model.card.version}
_HEADERS = [(b"content-type", b"application/json")]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = await read_asgi_body(receive, 1 << 20, None)
    if scope["path"] == "/predict":
        x = np.asarray(orjson.loads(body)["instances"], dtype=np.float32)
        out = _model.predict(x)
        preds = [
            {
                "label": _labels[c],
                "class_id": c,
                "probabilities": dict(zip(_labels, s, strict=True)),
            }
            for c, s in zip(out.class_ids.tolist(), out.scores, strict=True)
        ]
        payload = orjson.dumps(
            {"request_id": str(uuid.uuid4()), "model": _meta, "predictions": preds},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        status = 200
    else:
        payload, status = b'{"ready":true}', 200
    await send({"type": "http.response.start", "status": status, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": payload})


if __name__ == "__main__":
    uvicorn.run(
        app,
        host=_settings.host,
        port=_settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        lifespan="off",
        server_header=False,
        log_level="warning",
    )
