"""`python -m training`: run the pipeline or one step, promote a version, list models.

python -m training run --all                 # every model: data..register (cached steps)
python -m training run --model iris-svc      # one model
python -m training export --model iris-svc   # up to a step, without registering
python -m training promote --model iris-svc [--version 3] [--alias production]
python -m training promote --all             # every model's candidate -> production

Without arguments, the command comes from the environment, as a Kubernetes Job's containers
run it (one image, one command, the step in an env var): MLSP_STEP (data, train, evaluate,
export, register or run) for the models in MLSP_TRAIN_MODELS (comma-separated; default all).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from training.catalog import MODELS, get_spec
from training.pipeline import run_model
from training.register import PRODUCTION, promote
from training.settings import TrainingSettings, get_settings

STEPS = ["data", "train", "evaluate", "export", "register"]


def _models(args: argparse.Namespace) -> list[str]:
    if args.all:
        return list(MODELS)
    if not args.model:
        raise SystemExit("name a model with --model NAME (repeatable) or use --all")
    return [get_spec(m).name for m in args.model]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ["run", *STEPS, "promote"]:
        p = sub.add_parser(name)
        p.add_argument("--model", action="append", help="model name (repeatable)")
        p.add_argument("--all", action="store_true", help="every model in the catalogue")
        if name == "promote":
            p.add_argument("--version", help="registry version (default: the candidate)")
            p.add_argument("--alias", default=PRODUCTION)
        if name == "run":
            p.add_argument(
                "--promote",
                action="store_true",
                help="then point @production at the registered version (a cluster's first models)",
            )
    sub.add_parser("list")
    return parser


def _list() -> int:
    for spec in MODELS.values():
        print(f"{spec.name:24} {spec.dataset:7} {spec.task}")
    return 0


def _promote(args: argparse.Namespace, names: list[str], settings: TrainingSettings) -> int:
    if args.version and len(names) != 1:
        raise SystemExit("--version needs exactly one --model")
    for name in names:
        promoted = promote(name, settings, args.version, args.alias)
        print(f"{name}@{args.alias} -> version {promoted}")
    return 0


def _run(args: argparse.Namespace, names: list[str], settings: TrainingSettings) -> int:
    """`run` (up to register, then maybe promote) or one step: the pipeline for each model."""
    until = "register" if args.command == "run" else args.command
    for name in names:
        version = run_model(get_spec(name), settings, until=until)
        if version is not None:
            print(f"{name}: registered version {version} (@candidate)")
            if args.command == "run" and args.promote:
                promote(name, settings, version)
                print(f"{name}@{PRODUCTION} -> version {version}")
    return 0


def from_environment() -> list[str]:
    """The arguments MLSP_STEP and MLSP_TRAIN_MODELS stand for (none when MLSP_STEP is unset)."""
    step = os.environ.get("MLSP_STEP", "").strip()
    if not step:
        return []
    models = [m.strip() for m in os.environ.get("MLSP_TRAIN_MODELS", "").split(",") if m.strip()]
    return [step, *(f"--model={m}" for m in models)] if models else [step, "--all"]


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:] or from_environment()
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings = get_settings()

    if args.command == "list":
        return _list()
    names = _models(args)
    if args.command == "promote":
        return _promote(args, names, settings)
    return _run(args, names, settings)


if __name__ == "__main__":
    sys.exit(main())
