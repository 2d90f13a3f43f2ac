"""Fetch one registry model version into a folder, verified: the model_load init container.

    MLSP_MODEL_URI=models:/iris-svc@production MLFLOW_TRACKING_URI=http://mlflow:5000 \\
    MLSP_MODEL_DIR=/models/iris-svc python -m serving.loader

Resolves the alias to a concrete version, downloads it, checks sha256 against the registry and
the card, runs the golden examples, then exits 0. Unreachable MLflow or a missing alias is
retried with backoff and jitter until `MLSP_LOAD_DEADLINE_SECONDS`; then, or at once for a
tampered artifact or a bad URI, it exits 1 and the Pod never starts its server (on Kubernetes
the old ReplicaSet keeps serving). There is no fallback model: a pod serves exactly the version
its alias pointed to when it started, and reports that version, never the alias.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import Field

from serving.logs import configure_logging
from serving.registry import ModelVersion, RegistryError, fetch, verify
from serving.settings import ModelDirSettings, ProcessSettings

log = logging.getLogger("serving.loader")


class LoaderSettings(ProcessSettings, ModelDirSettings):
    """The loader (an init step): which registry version to fetch, verify and write where."""

    service: str = "model-loader"
    pattern: str = "model_load"
    model_uri: str = "models:/iris-svc@production"
    """Registry URI: models:/NAME@ALIAS or models:/NAME/VERSION."""
    model_dir: Path = Path("/models/iris-svc")
    """Folder to fill with model.onnx + model.json."""
    load_deadline_seconds: float = Field(120.0, ge=0)
    """Give up (exit 1) when the model could not be fetched within this many seconds."""
    expect_version: str | None = None
    """Refuse anything but this version (the model_in_image build pins it)."""
    tracking_uri: str = Field("http://127.0.0.1:5000", validation_alias="MLFLOW_TRACKING_URI")
    """The MLflow server (MLflow's own variable, MLFLOW_TRACKING_URI)."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serving.loader",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--uri", help="overrides MLSP_MODEL_URI")
    parser.add_argument("--dest", type=Path, help="overrides MLSP_MODEL_DIR")
    parser.add_argument("--deadline", type=float, help="overrides MLSP_LOAD_DEADLINE_SECONDS")
    parser.add_argument("--expect-version", help="overrides MLSP_EXPECT_VERSION")
    parser.add_argument("--tracking-uri", help="overrides MLFLOW_TRACKING_URI")
    sub = parser.add_subparsers(dest="command")
    check = sub.add_parser(
        "verify", help="only verify a fetched folder (the model_in_image build stage)"
    )
    check.add_argument("dir", type=Path)
    check.add_argument("--name", required=True)
    check.add_argument("--version", required=True)
    check.add_argument("--sha256", required=True, help="the registry version's sha256 tag")
    args = parser.parse_args(argv)
    s = LoaderSettings()
    configure_logging(s.service, s.pattern, s.log_level)
    if args.command == "verify":
        mv = ModelVersion(args.name, args.version, source="", sha256=args.sha256, run_id=None)
        try:
            verify(args.dir, mv)
        except RegistryError as exc:
            log.error("model refused", extra={"dir": str(args.dir), "error": str(exc)})
            return 1
        log.info("model verified", extra={"model": mv.name, "model_version": mv.version})
        return 0
    uri = args.uri or s.model_uri
    dest = args.dest or s.model_dir
    try:
        mv = fetch(
            uri,
            args.tracking_uri or s.tracking_uri,
            dest,
            deadline_seconds=s.load_deadline_seconds if args.deadline is None else args.deadline,
            expect_version=args.expect_version or s.expect_version,
        )
    except RegistryError as exc:
        log.error(
            "model fetch failed",
            extra={"uri": uri, "error": str(exc), "retryable": exc.retryable},
        )
        return 1
    log.info(
        "model ready to serve",
        extra={"uri": uri, "model": mv.name, "model_version": mv.version, "dir": str(dest)},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
