"""Build the project's images with podman or docker (whichever is there, or CONTAINER_ENGINE).

    serving          docker/serving.Dockerfile           every pattern's server and the loader
    batch            docker/serving.Dockerfile (EXTRAS=postgres)  serving + the PostgreSQL driver
    training         docker/training.Dockerfile (training)  the pipeline, for the bootstrap Job
    mlflow           docker/training.Dockerfile (mlflow)    registry server
    redis            docker/redis.Dockerfile             redis-server 7.0 (Debian), queues, caches
    postgres         docker/postgres.Dockerfile          PostgreSQL 15 (Debian), database patterns
    model-in-image   docker/model-in-image.Dockerfile    serving + one verified model version
                     (and model-in-image:<model>, batch:<model>: the same for other models/bases)

Machine-specific flags stay out of the defaults: BASE_IMAGE (a local base where no registry
is reachable) and BUILD_FLAGS (e.g. a CA bundle mount where TLS is re-signed) are opt-in.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
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
from patterns.supervisor import Stack
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
    tag: str | None = None
    """A fixed tag (a third-party server's version); default: the project version."""
    args: tuple[tuple[str, str], ...] = ()
    """Build args of this image."""


@dataclass(frozen=True)
class ModelImage:
    """A base image plus one verified registry model (docker/model-in-image.Dockerfile),
    tagged <model>-v<version> in the base's repository (model-in-image for serving)."""

    base: str
    model: str
    service: str = "model-in-image"
    """Default MLSP_SERVICE of the image (manifests usually set their own)."""


IMAGES = {
    "serving": ImageSpec("serving", "docker/serving.Dockerfile", "localhost/mlsp-serving"),
    "batch": ImageSpec(
        "batch",
        "docker/serving.Dockerfile",
        "localhost/mlsp-batch",
        args=(("EXTRAS", "postgres"), ("TITLE", "mlsp-batch")),
    ),
    "training": ImageSpec(
        "training", "docker/training.Dockerfile", "localhost/mlsp-training", "training"
    ),
    "mlflow": ImageSpec("mlflow", "docker/training.Dockerfile", "localhost/mlsp-mlflow", "mlflow"),
    "redis": ImageSpec("redis", "docker/redis.Dockerfile", "localhost/mlsp-redis", tag="7.0"),
    "postgres": ImageSpec(
        "postgres", "docker/postgres.Dockerfile", "localhost/mlsp-postgres", tag="15"
    ),
    "model-in-image": ImageSpec(
        "model-in-image", "docker/model-in-image.Dockerfile", "localhost/mlsp-model-in-image"
    ),
}
MODEL_IMAGES = {
    # model_in_image's own image: `--model-uri` picks its model (default MODEL_URI)
    "model-in-image": ModelImage("serving", "iris-svc"),
    "model-in-image:digits-lr": ModelImage("serving", "digits-lr"),
    "model-in-image:digits-svc": ModelImage("serving", "digits-svc"),
    "model-in-image:iris-ocsvm": ModelImage("serving", "iris-ocsvm"),
    "model-in-image:iris-ovr-setosa": ModelImage("serving", "iris-ovr-setosa"),
    "model-in-image:iris-ovr-versicolor": ModelImage("serving", "iris-ovr-versicolor"),
    "model-in-image:iris-ovr-virginica": ModelImage("serving", "iris-ovr-virginica"),
    "batch:iris-svc": ModelImage("batch", "iris-svc", service="batch-score"),
    "batch:digits-lr": ModelImage("batch", "digits-lr", service="data-cache"),
}
PATTERN_IMAGES = {
    "web_single": ("serving", "model-in-image"),
    "model_in_image": ("serving", "model-in-image"),
    "model_load": ("serving", "training", "mlflow"),
    "asynchronous": ("serving", "redis", "model-in-image:digits-svc"),
    "synchronous": ("serving", "model-in-image:digits-lr"),
    "sync_async": ("serving", "redis", "model-in-image:digits-lr", "model-in-image:digits-svc"),
    "batch_inference": ("serving", "batch", "postgres", "batch:iris-svc"),
    "prep_pred": ("serving", "model-in-image:digits-lr"),
    "serial": ("serving", "model-in-image:iris-ocsvm", "model-in-image"),
    "parallel": (
        "serving",
        "model-in-image:iris-ovr-setosa",
        "model-in-image:iris-ovr-versicolor",
        "model-in-image:iris-ovr-virginica",
    ),
    "prediction_cache": ("serving", "redis", "model-in-image"),
    "data_cache": ("serving", "batch", "redis", "postgres", "batch:digits-lr"),
}
"""Images an overlay needs; patterns not listed need only `serving`."""


def images_for(pattern: str | None) -> tuple[str, ...]:
    if pattern is None:
        return tuple(dict.fromkeys([*IMAGES, *MODEL_IMAGES]))
    return PATTERN_IMAGES.get(pattern, ("serving",))


def image_key(ref: str) -> tuple[str, str]:
    """(repository, model) of an image reference. A tag <model>-v<N> names a baked model
    (model_in_image); any other tag is a version. Two references with the same key are the
    same image at another version: how manifests' tags are pointed at the images just built."""
    name, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    baked = re.match(r"^(.+)-v\d+$", tag)
    return name, baked.group(1) if baked else ""


def planned_keys(pattern: str | None) -> set[tuple[str, str]]:
    """image_key of every image `build(pattern)` makes, without building."""
    keys = set()
    for key in images_for(pattern):
        if key in MODEL_IMAGES:
            mi = MODEL_IMAGES[key]
            keys.add((IMAGES["model-in-image" if mi.base == "serving" else mi.base].repo, mi.model))
        else:
            keys.add((IMAGES[key].repo, ""))
    return keys


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


def _build(
    spec: ImageSpec, tag: str, args: dict[str, str], quiet: bool, repo: str | None = None
) -> str:
    ref = f"{repo or spec.repo}:{tag}"
    cmd = [engine(), "build", "-f", str(ROOT / spec.dockerfile), "-t", ref]
    if spec.target:
        cmd += ["--target", spec.target]
    build_args = {"VERSION": VERSION, "GIT_SHA": git_sha(), **dict(spec.args), **args}
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
    stack = Stack(Path(tempfile.mkdtemp(prefix="mlsp-build-")))
    try:
        yield runner.ensure_mlflow(stack, data_dir)
    finally:
        stack.stop()
        shutil.rmtree(stack.workdir, ignore_errors=True)


def bake_model(
    serving_ref: str,
    uri: str,
    data_dir: Path,
    quiet: bool,
    repo: str | None = None,
    service: str = "model-in-image",
) -> str:
    """Fetch and verify `uri` into build/model/, then build `serving_ref` + that model
    (docker/model-in-image.Dockerfile), tagged <name>-v<version> in `repo`."""
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
            "TITLE": (repo or IMAGES["model-in-image"].repo).rsplit("/", 1)[-1],
            "SERVICE": service,
        },
        quiet,
        repo,
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

    def need(key: str) -> str:
        if key in built:
            return built[key]
        if key in MODEL_IMAGES:
            mi = MODEL_IMAGES[key]
            base = need(mi.base)
            uri = model_uri if key == "model-in-image" else f"models:/{mi.model}@production"
            repo = None if mi.base == "serving" else IMAGES[mi.base].repo
            built[key] = bake_model(base, uri, data_dir, quiet, repo, mi.service)
        else:
            spec = IMAGES[key]
            built[key] = _build(spec, spec.tag or VERSION, {}, quiet)
        return built[key]

    need("serving")
    for key in images_for(pattern):
        need(key)
    return built
