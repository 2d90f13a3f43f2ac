"""The history of batch_training's registry aliases, and a one-command rollback.

    python -m patterns.batch_training.aliases history [--alias production]
    python -m patterns.batch_training.aliases rollback [--reason TEXT]
    python -m patterns.batch_training.aliases runs [--last 10]

MLflow keeps only where an alias points now. Every move this pattern makes (a training run's
`@candidate`, a gated promotion, a rollback) is a row of `alias_moves`: when, who
(MLSP_ACTOR or user@host), from which version to which, why, the metrics and the run.

`rollback` points `@production` back at the champion before the current one: the version the
current one replaced when it was promoted. Rolling back twice walks back twice (a rollback is
not a promotion, so it is never the move that is undone). It takes the training run lock
(exit 75 while a run is going), and a run re-reads `@production` before it promotes, so the
two never interleave. The move is recorded like any other, and the training runs go on: the
next good challenger is promoted again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from patterns.batch_training.retrain import RetrainSettings
from patterns.batch_training.store import EX_TEMPFAIL, Locked, moves, record_move, run_lock, schema
from serving.db import Db
from training import register

ROLLBACK = "rollback"


def previous_champion(history: list[dict[str, Any]], current: str) -> str | None:
    """The version the promotion that made `current` the champion replaced."""
    for move in reversed(history):
        if move["to"] == current and move["reason"] != ROLLBACK:
            return str(move["from"]) if move["from"] is not None else None
    return None


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def history(db: Db, s: RetrainSettings, alias: str | None) -> int:
    for m in moves(db, s.model, alias):
        print(
            f"{_stamp(m['at'])}  {m['alias']:10} {m['from'] or '-':>3} -> {m['to']:<3} "
            f"{m['reason']:24} by {m['actor']}  run {m['run_id'] or '-'}  {m['metrics']}"
        )
    return 0


def runs(db: Db, s: RetrainSettings, last: int) -> int:
    cols = (
        "id, status, snapshot_rows, new_rows, quarantined, version, champion_version, "
        "champion_score, challenger_score, reason"
    )
    rows = db.execute(
        f"SELECT {cols} FROM training_runs WHERE model = %s ORDER BY id DESC LIMIT %s",  # noqa: S608
        (s.model, last),
    ).fetchall()
    db.rollback()
    keys = [c.strip() for c in cols.split(",")]
    for row in reversed(rows):
        print(json.dumps(dict(zip(keys, row, strict=True))))
    return 0


def rollback(db: Db, s: RetrainSettings, reason: str) -> int:
    client = register.mlflow_client(s)
    current = str(client.get_model_version_by_alias(s.model, register.PRODUCTION).version)
    target = previous_champion(moves(db, s.model, register.PRODUCTION), current)
    if target is None:
        print(f"rollback: no champion before version {current} of {s.model}: nothing to do")
        return 1
    register.promote(s.model, s, target)
    record_move(db, s.model, register.PRODUCTION, current, target, ROLLBACK, None, {"note": reason})
    print(f"{s.model}@{register.PRODUCTION}: version {current} -> {target} (rollback)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m patterns.batch_training.aliases",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("history", help="every recorded alias move, oldest first")
    h.add_argument("--alias", help="only this alias (production, candidate)")
    r = sub.add_parser("runs", help="the last training runs, oldest first")
    r.add_argument("--last", type=int, default=10)
    b = sub.add_parser("rollback", help="@production back to the champion before it")
    b.add_argument("--reason", default="", help="recorded with the move")
    args = parser.parse_args(argv)
    s = RetrainSettings()
    db = Db.from_settings(s)
    try:
        db.create_schema(schema(db))
        if args.command == "history":
            return history(db, s, args.alias)
        if args.command == "runs":
            return runs(db, s, max(1, min(args.last, 1000)))
        try:
            with run_lock(db):  # never in the middle of a training run's promotion
                return rollback(db, s, args.reason)
        except Locked as exc:
            print(f"rollback: {exc}; try again when it is done")
            return EX_TEMPFAIL
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
