"""Build the project's images with podman or docker (whichever is there, or CONTAINER_ENGINE).

    serving          docker/serving.Dockerfile           every pattern's server and the loader
    training         docker/training.Dockerfile (training)  the pipeline, for the bootstrap Job
    mlflow           docker/training.Dockerfile (mlflow)    registry server
    model-in-image   docker/model-in-image.Dockerfile    serving + one verified model version

Machine-specific flags stay out of the defaults: BASE_IMAGE (a local base where no registry
is reachable) and BUILD_FLAGS (e.g. a CA bundle mount where TLS is re-signed) are opt-in.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from patterns import runner
from serving.registry import fetch
from training.steps import git_sha

ROOT = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
MODEL_URI = "models:/iris-svc@production"


@dataclass(frozen=True)
class ImageSpec:
    key: str
    dockerfile: str
    repo: str
    target: str | None = None


IMAGES = {
    "serving": ImageSpec("serving", "docker/serving.Dockerfile", "localhost/mlsp-serving"),
    "training": ImageSpec(
        "training", "docker/training.Dockerfile", "localhost/mlsp-training", "training"
    ),
    "mlflow": ImageSpec("mlflow", "docker/training.Dockerfile", "localhost/mlsp-mlflow", "mlflow"),
    "model-in-image": ImageSpec(
        "model-in-image", "docker/model-in-image.Dockerfile", "localhost/mlsp-model-in-image"
    ),
}
PATTERN_IMAGES = {
    "web_single": ("serving", "model-in-image"),
    "model_in_image": ("serving", "model-in-image"),
    "model_load": ("serving", "training", "mlflow"),
}
"""Images an overlay needs; patterns not listed need only `serving`."""


def images_for(pattern: str | None) -> tuple[str, ...]:
    if pattern is None:
        return tuple(IMAGES)
    return PATTERN_IMAGES.get(pattern, ("serving",))


def engine() -> str:
    name = os.environ.get("CONTAINER_ENGINE") or (
        "podman" if shutil.which("podman") else "docker" if shutil.which("docker") else ""
    )
    if not name:
        raise RuntimeError("no container engine: install podman or docker")
    return name


def image_size(ref: str) -> int:
    out = subprocess.run(
        [engine(), "image", "inspect", ref, "--format", "{{.Size}}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(out.stdout.strip())


def _build(spec: ImageSpec, tag: str, args: dict[str, str], quiet: bool) -> str:
    ref = f"{spec.repo}:{tag}"
    cmd = [engine(), "build", "-f", str(ROOT / spec.dockerfile), "-t", ref]
    if spec.target:
        cmd += ["--target", spec.target]
    build_args = {"VERSION": VERSION, "GIT_SHA": git_sha(), **args}
    if base := os.environ.get("BASE_IMAGE"):
        build_args["BASE_IMAGE"] = base
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    cmd += shlex.split(os.environ.get("BUILD_FLAGS", ""))
    cmd.append(str(ROOT))
    print(f"build {ref}", flush=True)
    started = time.monotonic()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    if result.returncode != 0:
        tail = (result.stdout or "")[-4000:] + (result.stderr or "")[-2000:] if quiet else ""
        raise RuntimeError(f"build of {ref} failed ({result.returncode})\n{tail}")
    print(
        f"  {ref}: {image_size(ref) / 1e6:.0f} MB in {time.monotonic() - started:.0f} s",
        flush=True,
    )
    return ref


@contextlib.contextmanager
def registry_url(data_dir: Path) -> Iterator[str]:
    """MLFLOW_TRACKING_URI if it answers, else a local server over data/mlflow."""
    stack = runner.Stack(Path(tempfile.mkdtemp(prefix="mlsp-build-")))
    try:
        yield runner.ensure_mlflow(stack, data_dir)
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)


def bake_model(serving_ref: str, uri: str, data_dir: Path, quiet: bool) -> str:
    """Fetch and verify `uri` into build/model/, then build the model-in-image image."""
    dest = ROOT / "build" / "model"
    shutil.rmtree(dest, ignore_errors=True)
    with registry_url(data_dir) as url:
        mv = fetch(uri, url, dest, deadline_seconds=30)
    card = json.loads((dest / "model.json").read_text())
    return _build(
        IMAGES["model-in-image"],
        f"{mv.name}-v{mv.version}",
        {
            "SERVING_IMAGE": serving_ref,
            "MODEL_NAME": mv.name,
            "MODEL_VERSION": mv.version,
            "MODEL_SHA256": card["sha256"],
        },
        quiet,
    )


def build(
    pattern: str | None = None,
    *,
    model_uri: str = MODEL_URI,
    data_dir: Path | None = None,
    quiet: bool = False,
) -> dict[str, str]:
    """Build what `pattern` needs (everything when None); returns {key: image ref}."""
    data_dir = data_dir or Path(os.environ.get("MLSP_DATA_DIR", ROOT / "data"))
    built: dict[str, str] = {}
    built["serving"] = _build(IMAGES["serving"], VERSION, {}, quiet)
    for key in images_for(pattern):
        if key in built:
            continue
        if key == "model-in-image":
            built[key] = bake_model(built["serving"], model_uri, data_dir, quiet)
        else:
            built[key] = _build(IMAGES[key], VERSION, {}, quiet)
    return built
