"""Build the project's images with podman or docker (whichever is there, or CONTAINER_ENGINE).

    serving          docker/serving.Dockerfile           every pattern's server and the loader
    batch            docker/serving.Dockerfile (EXTRAS=postgres)  serving + the PostgreSQL driver
    monitor          docker/serving.Dockerfile (EXTRAS=postgres monitoring)  batch + scipy (drift)
    training         docker/training.Dockerfile (training)  the pipeline, for the bootstrap Job
    mlflow           docker/training.Dockerfile (mlflow)    registry server
    redis            docker/redis.Dockerfile             redis-server 7.0 (Debian), queues, caches
    postgres         docker/postgres.Dockerfile          PostgreSQL 15 (Debian), database patterns
    loadtest         docker/loadtest.Dockerfile          headless locust, load_test's Job
    model-in-image   docker/model-in-image.Dockerfile    serving + one verified model version
                     (and model-in-image:<model>, batch:<model>: the same for other models/bases)

Tags are content: <version>-<12 hex> (model images <model>-v<N>-<12 hex>), a sha256 over the
Dockerfile, the files that go into the image and the build args (content_tag). A change to the
code gives a new tag, so `make deploy` changes the pod templates and Kubernetes rolls the pods;
an unchanged image keeps its tag. Every model image has a repository of its own
(<base repository>-<model>, model_in_image's own image excepted), because the tags are set
with kustomize `images:`, which matches containers by repository (manifests.render).

Machine-specific flags stay out of the defaults: BASE_IMAGE (a local base where no registry
is reachable) and BUILD_FLAGS (e.g. a CA bundle mount where TLS is re-signed) are opt-in.
"""

from __future__ import annotations

import contextlib
import hashlib
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
    """The version part of the tag (a third-party server's version); default: the project
    version. The built tag is <version>-<content> (content_tag)."""
    args: tuple[tuple[str, str], ...] = ()
    """Build args of this image."""
    inputs: tuple[str, ...] = ()
    """Files and folders of the build context that go into the image (besides the Dockerfile):
    what its content tag is computed from."""


@dataclass(frozen=True)
class ModelImage:
    """A base image plus one verified registry model (docker/model-in-image.Dockerfile),
    tagged <model>-v<version> in the base's repository (model-in-image for serving)."""

    base: str
    model: str
    service: str = "model-in-image"
    """Default MLSP_SERVICE of the image (manifests usually set their own)."""
    own_repo: bool = True
    """A repository of its own, <base repository>-<model> (kustomize `images:` matches by
    repository, so two models in one overlay need two); False: model-in-image itself."""

    @property
    def repo(self) -> str:
        base = IMAGES["model-in-image" if self.base == "serving" else self.base].repo
        return f"{base}-{self.model}" if self.own_repo else base


LOCK = ("pyproject.toml", "uv.lock")
IMAGES = {
    "serving": ImageSpec(
        "serving",
        "docker/serving.Dockerfile",
        "localhost/mlsp-serving",
        inputs=(*LOCK, "serving", "patterns"),
    ),
    "batch": ImageSpec(
        "batch",
        "docker/serving.Dockerfile",
        "localhost/mlsp-batch",
        args=(("EXTRAS", "postgres"), ("TITLE", "mlsp-batch")),
        inputs=(*LOCK, "serving", "patterns"),
    ),
    "monitor": ImageSpec(
        "monitor",
        "docker/serving.Dockerfile",
        "localhost/mlsp-monitor",
        args=(("EXTRAS", "postgres monitoring"), ("TITLE", "mlsp-monitor")),
        inputs=(*LOCK, "serving", "patterns"),
    ),
    "training": ImageSpec(
        "training",
        "docker/training.Dockerfile",
        "localhost/mlsp-training",
        "training",
        inputs=(*LOCK, "serving", "training"),
    ),
    "mlflow": ImageSpec(
        "mlflow", "docker/training.Dockerfile", "localhost/mlsp-mlflow", "mlflow", inputs=LOCK
    ),
    "redis": ImageSpec("redis", "docker/redis.Dockerfile", "localhost/mlsp-redis", tag="7.0"),
    "postgres": ImageSpec(
        "postgres",
        "docker/postgres.Dockerfile",
        "localhost/mlsp-postgres",
        tag="15",
        inputs=("docker/postgres-entrypoint.sh",),
    ),
    "model-in-image": ImageSpec(
        "model-in-image", "docker/model-in-image.Dockerfile", "localhost/mlsp-model-in-image"
    ),
    "loadtest": ImageSpec(
        "loadtest",
        "docker/loadtest.Dockerfile",
        "localhost/mlsp-loadtest",
        inputs=(*LOCK, "serving", "patterns", "bench/users.py"),
    ),
}
MODEL_IMAGES = {
    # model_in_image's own image: `--model-uri` picks its model (default MODEL_URI)
    "model-in-image": ModelImage("serving", "iris-svc", own_repo=False),
    "model-in-image:digits-lr": ModelImage("serving", "digits-lr"),
    "model-in-image:digits-svc": ModelImage("serving", "digits-svc"),
    "model-in-image:iris-ocsvm": ModelImage("serving", "iris-ocsvm"),
    "model-in-image:iris-lr": ModelImage("serving", "iris-lr"),
    "model-in-image:iris-rf": ModelImage("serving", "iris-rf"),
    "model-in-image:iris-ovr-setosa": ModelImage("serving", "iris-ovr-setosa"),
    "model-in-image:iris-ovr-versicolor": ModelImage("serving", "iris-ovr-versicolor"),
    "model-in-image:iris-ovr-virginica": ModelImage("serving", "iris-ovr-virginica"),
    "batch:iris-svc": ModelImage("batch", "iris-svc", service="batch-score"),
    "batch:digits-lr": ModelImage("batch", "digits-lr", service="data-cache"),
    "monitor:iris-svc": ModelImage("monitor", "iris-svc", service="drift-monitor"),
}
PATTERN_IMAGES = {
    "web_single": ("serving", "model-in-image"),
    "model_in_image": ("serving", "model-in-image"),
    "model_load": ("serving", "training", "mlflow"),
    "pipeline_training": ("serving", "training", "mlflow"),
    "batch_training": ("training", "mlflow", "postgres"),
    "inference_template": ("serving", "training", "mlflow"),
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
    "condition_based": (
        "serving",
        "model-in-image",
        "model-in-image:iris-rf",
        "model-in-image:digits-lr",
    ),
    "shadow_ab": ("serving", "batch", "postgres", "model-in-image", "model-in-image:iris-rf"),
    "online_ab": ("serving", "monitor", "postgres", "model-in-image", "model-in-image:iris-rf"),
    "parameter_based": (
        "serving",
        "model-in-image:iris-ovr-setosa",
        "model-in-image:iris-ovr-versicolor",
        "model-in-image:iris-ovr-virginica",
    ),
    "prediction_cache": ("serving", "redis", "model-in-image"),
    "circuit_breaker": ("serving", "model-in-image:iris-lr", "model-in-image"),
    "data_cache": ("serving", "batch", "redis", "postgres", "batch:digits-lr"),
    "edge_ai": ("serving", "model-in-image:digits-lr"),
    "prediction_log": (
        "serving",
        "batch",
        "redis",
        "postgres",
        "batch:iris-svc",
        "model-in-image:iris-ocsvm",
    ),
    "load_test": ("serving", "model-in-image", "loadtest"),
    "prediction_monitoring": (
        "serving",
        "batch",
        "monitor",
        "redis",
        "postgres",
        "batch:iris-svc",
        "model-in-image:iris-ocsvm",
        "monitor:iris-svc",
    ),
}
"""Images an overlay needs; patterns not listed need only `serving`."""


def images_for(pattern: str | None) -> tuple[str, ...]:
    if pattern is None:
        return tuple(dict.fromkeys([*IMAGES, *MODEL_IMAGES]))
    return PATTERN_IMAGES.get(pattern, ("serving",))


def repo_of(key: str) -> str:
    """The repository of an image key of IMAGES or MODEL_IMAGES."""
    return MODEL_IMAGES[key].repo if key in MODEL_IMAGES else IMAGES[key].repo


def repository(ref: str) -> str:
    """The repository of an image reference (a registry's :port is no tag)."""
    name = ref.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def baked_model(ref: str) -> str:
    """The model baked into the image a reference names ("" for an image without one)."""
    repo = repository(ref)
    return next((mi.model for mi in MODEL_IMAGES.values() if mi.repo == repo), "")


def planned_repos(pattern: str | None) -> set[str]:
    """Repository of every image `build(pattern)` makes, without building."""
    return {repo_of(key) for key in images_for(pattern)}


def tracked_files(paths: tuple[str, ...], root: Path = ROOT) -> list[str]:
    """The files under `paths` a build copies: what git tracks or would track (untracked
    files that are not ignored count: a build copies them too), minus what .dockerignore
    keeps out (caches, patterns' READMEs)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=root,
        capture_output=True,
        check=True,
    ).stdout.decode()
    files = sorted(set(filter(None, out.split("\0"))))
    return [f for f in files if (root / f).is_file() and not f.endswith("README.md")]


def content_tag(
    version: str, dockerfile: str, inputs: tuple[str, ...], args: dict[str, str], root: Path = ROOT
) -> str:
    """<version>-<12 hex digits>: sha256 over the Dockerfile, the files that go into the image
    (their paths and working-tree contents) and the build args. Any change to what the image is
    made of gives a new tag, so a redeploy changes the pod template and rolls the pods; an
    unchanged image keeps its tag (no restart)."""
    digest = hashlib.sha256()
    for name in [dockerfile, *tracked_files(inputs, root)] if inputs else [dockerfile]:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for key, value in sorted(args.items()):
        digest.update(f"{key}={value}\0".encode())
    return f"{version}-{digest.hexdigest()[:12]}"


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
    spec: ImageSpec, version: str, args: dict[str, str], quiet: bool, repo: str | None = None
) -> str:
    """Build `spec` tagged <version>-<content> (content_tag; GIT_SHA, a label, is left out:
    a commit that changes none of the image's files keeps the tag)."""
    build_args = {"VERSION": VERSION, **dict(spec.args), **args}
    if base := os.environ.get("BASE_IMAGE"):
        build_args["BASE_IMAGE"] = base
    tagged = {**build_args, "target": spec.target or ""}
    ref = f"{repo or spec.repo}:{content_tag(version, spec.dockerfile, spec.inputs, tagged)}"
    cmd = [engine(), "build", "-f", str(ROOT / spec.dockerfile), "-t", ref]
    if spec.target:
        cmd += ["--target", spec.target]
    build_args["GIT_SHA"] = git_sha()
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
    (docker/model-in-image.Dockerfile), tagged <name>-v<version>-<content> in `repo` (the
    content: the base image's reference, which carries its own content tag, and the model's
    name, version and sha256)."""
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
            built[key] = bake_model(base, uri, data_dir, quiet, mi.repo, mi.service)
        else:
            spec = IMAGES[key]
            built[key] = _build(spec, spec.tag or VERSION, {}, quiet)
        return built[key]

    need("serving")
    for key in images_for(pattern):
        need(key)
    return built
