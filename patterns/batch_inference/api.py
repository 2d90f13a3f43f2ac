"""batch_inference, the read-only API: the stored predictions (no model is loaded here).

GET /predictions/{item_id}: an item's predictions, one per model version.
GET /summary: items, and per model version how many were scored, failed, and per label.
The database is its hard dependency (/readyz), and a database outage is a 503 naming it.

    MLSP_DATABASE_URL=... python -m patterns.batch_inference.api
"""

from __future__ import annotations

import json
import sys
from typing import Any

from fastapi import FastAPI, Path
from fastapi.responses import Response

from patterns.batch_inference.db import Db, DbSettings
from serving.app import create_app
from serving.db import Store
from serving.errors import NotFound, Unavailable
from serving.inference import ERRORS, json_response
from serving.settings import ServingSettings
from serving.state import ServiceState


class ApiSettings(ServingSettings, DbSettings):
    statement_timeout_ms: int = 2_000
    connect_timeout_seconds: int = 2


def _read_item(db: Db, item_id: int) -> tuple[Any, list[Any]]:
    """The item's row (None if it does not exist) and its predictions, by model version."""
    found = db.execute("SELECT id FROM items WHERE id = %s", (item_id,)).fetchone()
    rows = db.execute(
        "SELECT model_version, label, probabilities, error FROM predictions "
        "WHERE item_id = %s ORDER BY model_version",
        (item_id,),
    ).fetchall()
    return found, rows


def _predictions(rows: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "model_version": v,
            "label": label,
            "probabilities": json.loads(p) if p else None,
            "error": err,
        }
        for v, label, p, err in rows
    ]


def _read_summary(db: Db) -> tuple[int, list[Any]]:
    """How many items, and the prediction counts by model version, label and failure."""
    items = db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
    rows = db.execute(
        "SELECT model_version, label, error IS NOT NULL, COUNT(*) FROM predictions "
        "GROUP BY model_version, label, error IS NOT NULL"
    ).fetchall()
    return items, rows


def _per_version(items: int, rows: list[Any]) -> dict[str, dict[str, Any]]:
    """Per model version: scored, errors, unscored and the per-label counts."""
    versions: dict[str, dict[str, Any]] = {}
    for version, label, failed, count in rows:
        v = versions.setdefault(version, {"scored": 0, "errors": 0, "labels": {}})
        if failed:
            v["errors"] += count
        else:
            v["scored"] += count
            v["labels"][label] = count
    for v in versions.values():
        v["unscored"] = items - v["scored"] - v["errors"]
    return versions


def build(settings: ApiSettings) -> FastAPI:
    query = Store(settings, service=settings.service).run

    def extend(app: FastAPI, state: ServiceState) -> None:
        async def database_up() -> str | None:
            try:
                await query(lambda db: db.execute("SELECT COUNT(*) FROM predictions").fetchone())
            except Unavailable as exc:
                return exc.message
            return None

        state.ready_checks.append(database_up)

        @app.get(
            "/predictions/{item_id}",
            tags=["results"],
            summary="An item's predictions, one per model version",
            responses=ERRORS,
        )
        async def item(item_id: int = Path(ge=1, le=2**62)) -> Response:
            found, rows = await query(lambda db: _read_item(db, item_id))
            if found is None:
                raise NotFound(f"item {item_id} does not exist", field="item_id")
            return json_response({"item_id": item_id, "predictions": _predictions(rows)})

        @app.get("/summary", tags=["results"], summary="Scored, failed and per-label counts")
        async def summary() -> Response:
            items, rows = await query(_read_summary)
            return json_response({"items": items, "model_versions": _per_version(items, rows)})

    return create_app(settings, needs_model=False, extend=extend)


if __name__ == "__main__":
    from serving.server import serve_pattern

    sys.exit(serve_pattern("batch_inference", ApiSettings, build))
