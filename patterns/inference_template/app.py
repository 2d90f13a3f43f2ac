"""inference_template: many similar models, one shared service, configured by a spec.

`python -m patterns.inference_template new --spec S --out DIR` renders a service's overlay,
ConfigMap, README, locustfile and smoke test; this module is the server every such service
runs: the shared API and Open Inference Protocol v2 (serving.create_app) for the model the
`model-loader` init step fetched, refused at load unless its card is the one the spec describes
(serving/expect.py: name, input, features, labels, preprocessing). Trade-off: services cannot
drift apart, and none can grow code of its own; one that needs it leaves the template.
Manifest: manifests/patterns/inference_template/ (the example service's rendered overlay).

    python -m patterns.inference_template.app
"""

from __future__ import annotations

import sys

from fastapi import FastAPI

from serving.app import create_app
from serving.expect import ExpectedModel, Expecting
from serving.predictor import OnnxPredictor
from serving.server import serve_pattern
from serving.settings import ServingSettings


class TemplateSettings(ServingSettings, ExpectedModel):
    """The shared server's settings and the model its spec describes."""


def build(settings: TemplateSettings) -> FastAPI:
    return create_app(settings, predictor=Expecting(OnnxPredictor(settings), settings))


if __name__ == "__main__":
    sys.exit(serve_pattern("inference_template", TemplateSettings, build))
