"""Process declaration of parameter_based (see patterns/declare.py).

parallel's processes (its three one-vs-rest backends and its own proxy) plus this pattern's
proxy, which calls only the backends of the active classes and applies the thresholds of its
parameter file.
"""

import json
from collections.abc import Mapping
from typing import Any

from patterns import smoke
from patterns.declare import Call, Pattern, Process, Smoke, Verdict
from patterns.parallel.pattern import BACKENDS
from patterns.parallel.pattern import PATTERN as PARALLEL

PARAMETERS_FILE = "{data}/parameter_based/parameters.yaml"
"""Locally a file in the data folder (absent: the book's defaults); on Kubernetes the
ConfigMap parameter-based-parameters, mounted as a folder."""

# setosa decides (p >= 0.9); a versicolor scores below its 0.85; virginica is off by default
ROWS = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"]})


def steered(out: Mapping[str, Any]) -> Verdict:
    """200, setosa decided, virginica's backend not called, the parameters' digest given."""
    body = smoke.mapping(out.get("body"))
    got, called = smoke.labels(body), body.get("called")
    ok = (
        out.get("status") == 200
        and got == out.get("expected")
        and called == ["setosa", "versicolor"]
        and isinstance(body.get("parameters"), str)
    )
    return ok, f"labels {got}, called {called}, parameters {body.get('parameters')}"


PATTERN = Pattern(
    id="parameter_based",
    summary="Thresholds and on/off switches from a hot-reloaded file before parallel's models",
    processes=(
        Process(
            "parameter-proxy",
            "patterns.parameter_based.proxy",
            env={
                "MLSP_SERVICE": "parameter-based-proxy",
                "MLSP_BACKENDS": BACKENDS,
                "MLSP_PARAMETERS_FILE": PARAMETERS_FILE,
            },
        ),
        *PARALLEL.processes,
    ),
    models=PARALLEL.models,
    entry="parameter-proxy",
    public=("proxy",),  # parallel's own argmax proxy stays reachable beside this one
    smoke=Smoke(
        calls=(
            Call(
                "predict",
                (ROWS,),
                steered,
                "POST {service}/predict: setosa decided, virginica (inactive) not called",
            ),
        )
    ),
)
