"""Process declaration of edge_ai (see patterns/declare.py).

Locally the manifest key is a fixed development value (below); on Kubernetes both processes
read it from the deploy-time Secret edge-manifest-key (kube/manifests.py), random per cluster.
"""

import json
from pathlib import Path

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke

ROWS = json.loads((Path(__file__).parent / "examples" / "digits.json").read_text())
DIGITS = json.dumps({**ROWS, "labels": ["1", "4"]})
"""Two digits of the test set (a 1 and a 4) and their labels: device-sim's image holds no
model of its own to read golden examples from, it has what it synced."""
DEV_KEY = "local-development-key-edge-ai-not-a-secret"
"""The local run's HMAC key (the README's commands pass it too): never used on a cluster."""

PATTERN = Pattern(
    id="edge_ai",
    summary="Devices update their model from a hub: signed manifests, A/B slots, rollback",
    processes=(
        Process(
            "hub",
            "patterns.edge_ai.hub",
            env={
                "MLSP_SERVICE": "model-hub",
                "MLSP_MODELS_DIR": "{data}/models",
                "MLSP_MANIFEST_KEY": DEV_KEY,
            },
        ),
        Process(
            "device-sim",
            "patterns.edge_ai.device_sim",
            env={
                "MLSP_SERVICE": "device-sim",
                "MLSP_HUB_URL": "{url:hub}",
                "MLSP_STATE_DIR": "{workdir}/device",
                "MLSP_MODEL_NAME": "digits-lr",
                "MLSP_MANIFEST_KEY": DEV_KEY,
                "MLSP_SYNC_INTERVAL_SECONDS": "5",
            },
        ),
    ),
    models=("digits-lr",),
    public=("device-sim",),
    smoke=Smoke(
        calls=(
            Call(
                "predict",
                (DIGITS,),
                smoke.same_labels,
                "POST {service}/predict: the device answers from the model it synced",
                service="edge-ai-device-sim",
                retries=6,  # the device syncs its first model from the hub after it starts
            ),
        )
    ),
)
