"""Containers and Kubernetes for ml-system-patterns.

python -m kube build [--pattern P]   build the images P needs (all without --pattern)
python -m kube check [P ...]         render overlays and validate them (no cluster)
python -m kube render P              print the rendered overlay
python -m kube play P [P ...]        build P's images, check and run P under podman kube play
python -m kube deploy P              kind or minikube: build, load, apply, wait
python -m kube undeploy P            delete what deploy applied (not the namespace)
python -m kube verify                the container tier of CI (make verify)
python -m kube rules                 write the PrometheusRule component from the alert rules
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from kube import check, deploy, images, manifests, monitoring, play, verify


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kube",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--pattern")
    b.add_argument("--model-uri", default=images.MODEL_URI)
    c = sub.add_parser("check")
    c.add_argument("overlays", nargs="*")
    sub.add_parser("play").add_argument("overlays", nargs="+")
    for name in ("render", "deploy", "undeploy"):
        sub.add_parser(name).add_argument("pattern")
    sub.add_parser("verify", add_help=False, help="options: python -m kube verify --help")
    sub.add_parser("rules")
    return parser


def _build(args: argparse.Namespace) -> int:
    pattern = deploy.manifests_pattern(args.pattern) if args.pattern else None
    for ref in images.build(pattern, model_uri=args.model_uri).values():
        print(ref)
    return 0


def _check(args: argparse.Namespace) -> int:
    failed = 0
    for overlay in args.overlays or manifests.overlays():
        docs, errors = check.check_overlay(deploy.manifests_pattern(overlay))
        print(f"{overlay}: {len(docs)} objects, {len(errors)} errors")
        for e in errors:
            print(f"  ERROR {e}")
        failed += bool(errors)
    return 1 if failed else 0


def _play(args: argparse.Namespace) -> int:
    failed = 0
    for overlay in args.overlays:
        pattern = deploy.manifests_pattern(overlay)
        refs = images.build(pattern, quiet=True)
        docs, errors = check.check_overlay(pattern, images=refs)
        for e in errors:
            print(f"  ERROR {e}")
        ok = not errors and play.play(pattern, docs).ok
        print(f"{pattern}: {'runs' if ok else 'FAILS'} under podman kube play")
        failed += not ok
    return 1 if failed else 0


def _render(args: argparse.Namespace) -> int:
    print(manifests.render(deploy.manifests_pattern(args.pattern)), end="")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    deploy.deploy(args.pattern)
    return 0


def _undeploy(args: argparse.Namespace) -> int:
    deploy.undeploy(args.pattern)
    return 0


def _rules(_args: argparse.Namespace) -> int:
    print(f"wrote {monitoring.write_rules().relative_to(manifests.ROOT)}")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": _build,
    "check": _check,
    "play": _play,
    "render": _render,
    "deploy": _deploy,
    "undeploy": _undeploy,
    "rules": _rules,
}


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify"]:
        return verify.main(argv[1:])
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except (deploy.DeployError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
