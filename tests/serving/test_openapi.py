"""Every new service documents its prediction routes: the OpenAPI document builds, names the
request body, and has no stray parameters (a handler argument FastAPI mistook for a query)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI


def apps() -> dict[str, FastAPI]:
    from patterns.data_cache.api import DataCacheSettings
    from patterns.data_cache.api import build as data_cache
    from patterns.parallel.proxy import ParallelSettings
    from patterns.parallel.proxy import build as parallel
    from patterns.prediction_cache.api import CacheSettings
    from patterns.prediction_cache.api import build as prediction_cache
    from patterns.prep_pred.prep import PrepSettings
    from patterns.prep_pred.prep import build as prep
    from patterns.serial.proxy import SerialSettings
    from patterns.serial.proxy import build as serial

    one = [{"name": "a", "url": "http://127.0.0.1:9"}]
    return {
        "serial": serial(SerialSettings(stages=one)),
        "parallel": parallel(ParallelSettings(backends=one)),
        "prep": prep(PrepSettings()),
        "prediction_cache": prediction_cache(CacheSettings()),
        "data_cache": data_cache(DataCacheSettings()),
    }


@pytest.mark.parametrize("name", ["serial", "parallel", "prep", "prediction_cache", "data_cache"])
def test_prediction_routes_are_documented(name: str) -> None:
    doc: dict[str, Any] = apps()[name].openapi()
    routes = {p: v["post"] for p, v in doc["paths"].items() if p.startswith("/predict")}
    assert routes, doc["paths"].keys()
    for path, op in routes.items():
        assert "parameters" not in op, (path, op.get("parameters"))
        assert op["requestBody"]["content"], path
        assert {"422", "503"} <= set(op["responses"]), path


@pytest.mark.parametrize(
    ("model", "kind"), [("iris-svc", "PredictionOut"), ("iris-ocsvm", "OutlierOut")]
)
def test_predict_answers_match_the_documented_schema(data_dir: Path, model: str, kind: str) -> None:
    """A classifier's and an outlier detector's (serial's gate) answers both validate against
    the schema /predict documents."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.schemas import PredictResponse
    from serving.settings import ServingSettings

    settings = ServingSettings(model_dir=data_dir / "models" / model, access_log=False)
    with TestClient(create_app(settings)) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.05)
        resp = client.post("/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert resp.status_code == 200, resp.text
        doc = client.get("/openapi.json").json()
    answer = PredictResponse.model_validate_json(resp.content, strict=True)
    assert type(answer.predictions[0]).__name__ == kind
    documented = doc["paths"]["/predict"]["post"]["responses"]["200"]["content"]["application/json"]
    assert documented["schema"]["$ref"].endswith("/PredictResponse")
    items = doc["components"]["schemas"]["PredictResponse"]["properties"]["predictions"]["items"]
    assert {"$ref": f"#/components/schemas/{kind}"} in items["anyOf"]
