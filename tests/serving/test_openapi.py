"""Every new service documents its prediction routes: the OpenAPI document builds, names the
request body, and has no stray parameters (a handler argument FastAPI mistook for a query)."""

from __future__ import annotations

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
