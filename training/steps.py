"""A content-addressed step cache: atomic outputs, a manifest per step, and resume on rerun.

A step's manifest records the sha256 of each declared input folder, its parameters and the
sha256 of the pipeline's code. If the manifest already on disk is identical, the step is a
no-op. Outputs are written to a temporary folder and renamed into place, so a crash never
leaves a half-written step that a rerun would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger("training")

MANIFEST = "manifest.json"
_CODE_ROOTS = ("training", "serving/preprocessing.py", "serving/model.py")


def hash_tree(path: Path) -> str:
    """sha256 over every file's relative name and bytes, in sorted order."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(b"\0")
        digest.update(file.read_bytes())
    return digest.hexdigest()


@lru_cache
def code_sha() -> str:
    """sha256 of the pipeline's own source: a code change invalidates every cached step."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for rel in _CODE_ROOTS:
        target = root / rel
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target]
        for file in files:
            digest.update(str(file.relative_to(root)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()


@lru_cache
def git_sha() -> str:
    """The commit the code came from (MLSP_GIT_SHA in images without .git)."""
    if sha := os.environ.get("MLSP_GIT_SHA"):
        return sha
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip()


@dataclass(frozen=True)
class StepResult:
    out: Path
    cached: bool


def run_step(
    step: str,
    out: Path,
    inputs: Mapping[str, Path],
    params: Mapping[str, Any],
    body: Callable[[Path], None],
) -> StepResult:
    """Run `body(tmp_dir)` unless `out` already holds the result for these inputs and params."""
    manifest = {
        "step": step,
        "inputs": {name: hash_tree(path) for name, path in sorted(inputs.items())},
        "params": dict(params),
        "code_sha": code_sha(),
    }
    existing = out / MANIFEST
    if existing.is_file() and json.loads(existing.read_text()) == manifest:
        log.info("step %s: cached (%s)", step, out)
        return StepResult(out, cached=True)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex}"
    tmp.mkdir()
    try:
        body(tmp)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if out.exists():
            stale = out.parent / f".{out.name}.old-{uuid.uuid4().hex}"
            out.rename(stale)
            shutil.rmtree(stale)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log.info("step %s: done (%s)", step, out)
    return StepResult(out, cached=False)


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
