"""web_single: one model behind one web API, the quickest way to serve it.

The baseline every other pattern reuses: `serving.create_app` gives the shared API
(/predict, /metadata, health, metrics) and Open Inference Protocol v2 for the model in
MLSP_MODEL_DIR (iris-svc by default). Trade-off: simplest to run and reason about, but the
model and the API scale together. Manifest: manifests/patterns/web_single/.

    python -m patterns.web_single.app
"""

from __future__ import annotations

import sys

from fastapi import FastAPI

from serving.app import create_app
from serving.server import serve_model
from serving.settings import ServingSettings, get_settings


def build(settings: ServingSettings | None = None) -> FastAPI:
    return create_app(settings or get_settings())


if __name__ == "__main__":
    sys.exit(serve_model("web_single"))
