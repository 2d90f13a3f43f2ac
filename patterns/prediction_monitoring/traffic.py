"""prediction_monitoring, the traffic generator: iris rows POSTed to a /predict URL, bounded.

In-distribution rows are drawn (with replacement) from the model card's reference sample (the
training rows the monitor compares with); `--drift FEATURE=+DELTA` adds DELTA to a feature
(repeatable), to play a drifted population. It stops at `--count` requests or `--seconds`,
whichever comes first (both capped), optionally paced at `--rate` requests per second.

    python -m patterns.prediction_monitoring.traffic --url http://127.0.0.1:8000 \\
        --count 600 --drift petal_length=+2

`log_rows` builds prediction_log rows (serving/predlog.py) from instances directly: what the
log writer would insert, for the monitor's tests and benchmark.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import orjson

from serving.model import ModelCard, read_card

MAX_COUNT = 1_000_000
MAX_SECONDS = 3600.0
MAX_BATCH = 256


def parse_drift(specs: Sequence[str], card: ModelCard) -> dict[int, float]:
    """`FEATURE=+DELTA` specs -> {feature index: delta}; ValueError naming a bad one."""
    shifts: dict[int, float] = {}
    for spec in specs:
        name, sep, delta = spec.partition("=")
        if not sep or name not in card.feature_names:
            raise ValueError(
                f"--drift {spec!r}: expected FEATURE=+DELTA, FEATURE one of {card.feature_names}"
            )
        try:
            value = float(delta)
        except ValueError:
            raise ValueError(f"--drift {spec!r}: {delta!r} is not a number") from None
        if not np.isfinite(value):
            raise ValueError(f"--drift {spec!r}: the delta must be finite")
        shifts[card.feature_names.index(name)] = value
    return shifts


def sample_rows(
    card: ModelCard, n: int, shifts: dict[int, float], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """`n` rows drawn from the card's reference sample, each feature in `shifts` moved."""
    sample = np.asarray(card.reference["sample"], dtype=np.float64)
    rows = sample[rng.integers(0, len(sample), n)]
    for i, delta in shifts.items():
        rows[:, i] += delta
    return np.round(rows, 6)


def log_rows(
    card: ModelCard,
    x: npt.NDArray[np.float64],
    class_ids: Sequence[int],
    ts: Sequence[float],
    *,
    batch: int = 1,
    sample_rate: float = 1.0,
) -> list[tuple[Any, ...]]:
    """prediction_log rows in serving/predlog.COLUMNS order, `batch` instances per request;
    request i is logged at ts[i]."""
    rows = []
    for i, start in enumerate(range(0, len(x), batch)):
        part = x[start : start + batch]
        ids = class_ids[start : start + batch]
        output = [
            {"label": card.labels[c], "class_id": int(c), "probabilities": None,
             "outlier_score": None, "outlier": None}
            for c in ids
        ]  # fmt: skip
        rows.append(
            (
                str(uuid.uuid4()),
                float(ts[i]),
                card.name,
                card.version,
                None,
                orjson.dumps(part.tolist()).decode(),
                orjson.dumps(output).decode(),
                1.0,
                None,
                sample_rate,
            )
        )
    return rows


def run(
    url: str,
    rows: npt.NDArray[np.float64],
    *,
    batch: int,
    seconds: float,
    rate: float | None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """POST `rows`, `batch` per request, until they are sent or `seconds` have passed."""
    statuses: Counter[str] = Counter()
    started = time.monotonic()
    sent = 0
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for start in range(0, len(rows), batch):
            now = time.monotonic()
            if now - started >= seconds:
                break
            if rate is not None:
                time.sleep(max(0.0, started + sent / rate - now))
            body = orjson.dumps({"instances": rows[start : start + batch].tolist()})
            try:
                status = client.post(
                    "/predict", content=body, headers={"Content-Type": "application/json"}
                ).status_code
                statuses[str(status)] += 1
            except httpx.HTTPError as exc:
                statuses[type(exc).__name__] += 1
            sent += 1
    elapsed = time.monotonic() - started
    return {"requests": sent, "seconds": round(elapsed, 3), "statuses": dict(statuses)}


def _env(name: str, default: str | None) -> str | None:
    return os.environ.get(f"MLSP_TRAFFIC_{name}", default)


def wait_ready(url: str, seconds: float) -> bool:
    """Wait (bounded) for the api's /readyz: as a Job the generator may start first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def main(argv: list[str] | None = None) -> int:
    """Options default to MLSP_TRAFFIC_<OPTION> (URL, COUNT, SECONDS, RATE, BATCH, DRIFT as
    a comma list, SEED) and MLSP_MODEL_DIR (else iris-svc under MLSP_DATA_DIR, default data/):
    how the pattern runs it as a process (a Job)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    url = _env("URL", "http://127.0.0.1:8000")
    parser.add_argument("--url", default=url, help="base URL of the api")
    data = Path(os.environ.get("MLSP_DATA_DIR", "data"))
    model = os.environ.get("MLSP_MODEL_DIR") or str(data / "models" / "iris-svc")
    parser.add_argument("--model-dir", type=Path, default=Path(model))
    count = int(_env("COUNT", "500") or 500)
    parser.add_argument("--count", type=int, default=count, help=f"requests (1..{MAX_COUNT})")
    seconds = float(_env("SECONDS", "60") or 60)
    parser.add_argument(
        "--seconds", type=float, default=seconds, help=f"at most (<= {MAX_SECONDS})"
    )
    rate = _env("RATE", None)
    parser.add_argument(
        "--rate", type=float, default=float(rate) if rate else None,
        help="requests per second (unset: flat out)",
    )  # fmt: skip
    batch = int(_env("BATCH", "1") or 1)
    parser.add_argument(
        "--batch", type=int, default=batch, help=f"rows per request (1..{MAX_BATCH})"
    )
    drift = [d for d in (_env("DRIFT", "") or "").split(",") if d]
    parser.add_argument("--drift", action="append", default=drift, metavar="FEATURE=+DELTA")
    parser.add_argument("--seed", type=int, default=int(_env("SEED", "0") or 0))
    parser.add_argument(
        "--wait", type=float, default=float(_env("WAIT_SECONDS", "0") or 0),
        help="first wait up to this long for the api's /readyz",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not 1 <= args.count <= MAX_COUNT:
        parser.error(f"--count must be 1..{MAX_COUNT}")
    if not 0 < args.seconds <= MAX_SECONDS:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS}]")
    if not 1 <= args.batch <= MAX_BATCH:
        parser.error(f"--batch must be 1..{MAX_BATCH}")
    if args.rate is not None and not 0 < args.rate <= 100_000:
        parser.error("--rate must be in (0, 100000]")
    card = read_card(args.model_dir)
    try:
        shifts = parse_drift(args.drift, card)
    except ValueError as exc:
        parser.error(str(exc))
    if args.wait and not wait_ready(args.url, min(args.wait, 600.0)):
        print(orjson.dumps({"error": f"{args.url}/readyz not 200 after {args.wait} s"}).decode())
        return 1
    rows = sample_rows(card, args.count * args.batch, shifts, np.random.default_rng(args.seed))
    summary = run(args.url, rows, batch=args.batch, seconds=args.seconds, rate=args.rate)
    print(orjson.dumps(summary).decode())
    return 0 if summary["requests"] and set(summary["statuses"]) == {"200"} else 1


if __name__ == "__main__":
    sys.exit(main())
