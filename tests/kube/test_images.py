"""Image tags are the images' content: a change to anything that goes into an image gives a
new tag (so a redeploy rolls the pods that run it), and nothing else does."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kube import images


def _repo(tmp_path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print(1)\n")
    (tmp_path / "app" / "README.md").write_text("docs\n")
    (tmp_path / "other.py").write_text("x = 1\n")
    (tmp_path / "Dockerfile").write_text("FROM base\nCOPY app/ app/\n")
    return tmp_path


def _tag(root: Path, args: dict[str, str] | None = None) -> str:
    return images.content_tag("0.1.0", "Dockerfile", ("app",), args or {}, root)


def test_the_tag_follows_the_content_of_the_image(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    first = _tag(root)
    assert first.startswith("0.1.0-") and len(first) == len("0.1.0-") + 12
    assert _tag(root) == first, "same content, same tag: a redeploy restarts nothing"
    (root / "other.py").write_text("x = 2\n")  # not in the image
    (root / "app" / "README.md").write_text("more docs\n")  # kept out by .dockerignore
    (root / "app" / "__pycache__").mkdir()
    (root / "app" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"\0")  # ignored
    assert _tag(root) == first
    (root / "app" / "main.py").write_text("print(2)\n")  # uncommitted code change
    changed = _tag(root)
    assert changed != first, "a code change must give a new tag (and roll the pods)"
    (root / "app" / "new.py").write_text("")  # an untracked file the build copies
    assert _tag(root) not in (first, changed)


def test_the_tag_follows_the_dockerfile_and_build_args(tmp_path: Path) -> None:
    root = _repo(tmp_path)
    first = _tag(root)
    assert _tag(root, {"EXTRAS": "postgres"}) != first
    (root / "Dockerfile").write_text("FROM base\nCOPY app/ /srv/\n")
    assert _tag(root) != first


def test_every_model_image_has_a_repository_of_its_own() -> None:
    """kustomize `images:` sets tags by repository: one repository per model image, or two
    models in one overlay would get the same tag."""
    repos = [images.repo_of(key) for key in images.MODEL_IMAGES]
    assert len(set(repos)) == len(repos)
    assert images.baked_model("localhost/mlsp-batch-iris-svc:iris-svc-v1-0123") == "iris-svc"
    assert images.baked_model("localhost/mlsp-serving:0.1.0-0123") == ""
    assert images.repository("localhost:5000/mlsp-serving:0.1.0") == "localhost:5000/mlsp-serving"
