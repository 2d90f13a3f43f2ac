"""python -m patterns.inference_template new --spec SPEC.yaml --out DIR [--force]

Renders a new model service from a spec: a kustomize overlay with its ConfigMap, a README, a
locustfile and a smoke test. Exit 0 rendered, 2 an invalid spec (the field named) or output
already there without --force.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from patterns.inference_template.render import OutputExists, render, write
from patterns.inference_template.spec import SpecError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m patterns.inference_template",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new", help="render a service's files from a spec")
    new.add_argument("--spec", type=Path, required=True, help="the service's spec (YAML)")
    new.add_argument("--out", type=Path, required=True, help="folder to write into")
    new.add_argument("--force", action="store_true", help="replace files already there")
    args = parser.parse_args(argv)
    try:
        written = write(render(args.spec, args.out), args.out, force=args.force)
    except (SpecError, OutputExists) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path.as_posix()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
