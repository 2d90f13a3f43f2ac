"""From a served model back to the training run that made it: registry version, run, code, data.

    MLFLOW_TRACKING_URI=http://127.0.0.1:5000 \\
        python -m patterns.pipeline_training.lineage http://127.0.0.1:8000

Reads the server's /metadata (the card of the version it serves), then asks the registry for
that version, its aliases, and the run that registered it (tags written by `training register`:
git sha, code sha, data hash, the hash of every step's output; params; metrics). It checks the
links agree (the served sha256 is the registry's and the run's, the served data hash is the
run's) and exits 1 when one does not: a served model whose training cannot be traced is a
finding, not a footnote.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import httpx

from training.register import mlflow_client
from training.settings import get_settings

STEPS = ("data", "train", "evaluate", "export")


def served_card(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url.rstrip('/')}/metadata", timeout=httpx.Timeout(2.0, connect=0.5))
    response.raise_for_status()
    card: dict[str, Any] = response.json()
    return card


def trace(card: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    """The lines to print and the checks (what, held) for the served `card`."""
    client = mlflow_client(get_settings())
    name, version = card["name"], str(card["version"])
    mv = client.get_model_version(name, version)
    aliases = sorted(getattr(mv, "aliases", []) or [])
    run = client.get_run(mv.run_id)
    tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
    lines = [
        f"served    {name} version {version}  sha256 {card['sha256']}",
        f"registry  {name} version {mv.version}  aliases {', '.join(aliases) or '-'}  "
        f"sha256 tag {mv.tags.get('sha256', '-')}",
        f"run       {mv.run_id}  status {run.info.status}",
        f"  code    git sha {tags.get('git_sha', '-')}",
        f"          code sha {tags.get('code_sha', '-')}",
        f"  data    data hash {tags.get('data_hash', '-')}",
        *(f"  step    {s:9} {tags.get(f'step.{s}', '-')}" for s in STEPS),
        "  params  " + " ".join(f"{k}={params[k]}" for k in sorted(params)),
        "  metrics " + " ".join(f"{k}={metrics[k]:.4f}" for k in sorted(metrics)),
    ]
    checks = [
        (
            "served sha256 == registry tag == run tag",
            card["sha256"] == mv.tags.get("sha256") == tags.get("sha256"),
        ),
        ("served data hash == run data hash", card.get("data_hash") == tags.get("data_hash")),
        ("served card names this run", card.get("mlflow_run_id") == mv.run_id),
    ]
    return lines, checks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m patterns.pipeline_training.lineage",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", help="base URL of a model server (its /metadata is read)")
    args = parser.parse_args(argv)
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        print("lineage: set MLFLOW_TRACKING_URI (the registry the model came from)")
        return 2
    try:
        card = served_card(args.url)
    except httpx.HTTPError as exc:
        print(f"lineage: {args.url}/metadata: {exc}")
        return 1
    lines, checks = trace(card)
    print("\n".join(lines))
    for what, held in checks:
        print(f"check     {what}: {'yes' if held else 'NO'}")
    return 0 if all(held for _, held in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
