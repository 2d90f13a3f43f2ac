"""model_in_image's worked example: the README's output, produced by running it
(patterns/example.py). Locally the server reads data/models/iris-svc, the folder the image
bakes in at /models/iris-svc.

make example PATTERN=model_in_image
"""

from __future__ import annotations

import re

from patterns.example import Walkthrough, curl_json

URL = "http://127.0.0.1:8000"
PRINT = 'import json, sys; m = json.load(sys.stdin); print(m["name"], m["version"], m["sha256"])'
METADATA = f"curl -s {URL}/metadata | python3 -c '{PRINT}'"
TAMPERED = "data/iris-svc-tampered"


def walk(w: Walkthrough) -> None:
    w.section("worked")
    w.note("which version this server (this image) serves: name, version, sha256 of model.onnx")
    w.sh(METADATA, expect=re.compile(r"^iris-svc 1 [0-9a-f]{64}$", re.M))
    w.sh(
        curl_json(f"{URL}/predict", {"instances": [[5.1, 3.5, 1.4, 0.2]]}),
        expect='"model":{"name":"iris-svc","version":"1"}',
    )
    w.sh(f"curl -s {URL}/metrics | grep '^mlsp_model_info'", expect='version="1"')

    w.section("failure")
    w.note("a corrupted model file never gets traffic: stop the server, start one on a copy of")
    w.note("the model folder with a byte appended to model.onnx; it exits 1 before it is ready")
    w.sh("make stop PATTERN=model_in_image PROCESS=api", expect="api: stopped")
    w.sh(
        f"rm -rf {TAMPERED} && cp -r data/models/iris-svc {TAMPERED} "
        f"&& echo >> {TAMPERED}/model.onnx"
    )
    w.sh(
        f"MLSP_MODEL_DIR={TAMPERED} timeout 20 .venv/bin/python -m patterns.model_in_image.app "
        '2>&1 | grep \'"fatal"\'; echo "exit code ${PIPESTATUS[0]}"',
        expect=lambda out: "sha256 mismatch" in out and "exit code 1" in out,
    )
    w.sh("make start PATTERN=model_in_image PROCESS=api", expect="api: running")
    w.until("make status PATTERN=model_in_image", "http://127.0.0.1:8000  ready")
