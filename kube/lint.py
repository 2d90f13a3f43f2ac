"""A second, independent manifest linter: checkov (pinned in kube/checkov.txt, run from its
own environment .venv-checkov, made by `make setup`), over the rendered overlays.

kube/manifests.py is the project's own judgement; checkov is Bridgecrew's, written by people
who never saw this repository. Both must agree that the rendered objects are sound: every
checkov check runs and fails `make verify`, except the few below, each skipped for a reason
that holds for every object of the project. A skip is global on purpose: a per-object
annotation would be copied onto every new workload without a second look.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from kube.manifests import ROOT, Doc

CHECKOV = ROOT / ".venv-checkov" / "bin" / "checkov"

SKIPS: dict[str, str] = {
    "CKV_K8S_15": (
        "Image Pull Policy should be Always: the images are built here and loaded into kind or"
        " minikube as archives (no registry to pull from); their tags are content hashes"
        " (kube/images.py), so IfNotPresent can never run stale code under a known tag"
    ),
    "CKV_K8S_43": (
        "Image should use digest: a digest exists only once an image is pushed to a registry;"
        " the content-addressed tag pins the same bytes, and kube/manifests.py render() sets"
        " a digest through kustomize `images:` when one is given"
    ),
    "CKV_K8S_35": (
        "Prefer secrets as files over environment variables: clients build their database URL"
        " from the password with the kubelet's $(POSTGRES_PASSWORD) expansion, which only"
        " environment variables have; the value is generated at deploy time, never in git"
    ),
}


@dataclass(frozen=True)
class Finding:
    overlay: str
    check_id: str
    check_name: str
    resource: str

    def __str__(self) -> str:
        return f"{self.overlay}: {self.resource}: {self.check_id} {self.check_name}"


@dataclass(frozen=True)
class Result:
    findings: list[Finding]
    passed: int
    resources: int
    version: str


def run(rendered: dict[str, list[Doc]], checkov: Path = CHECKOV, timeout: float = 600) -> Result:
    """checkov's kubernetes framework over each overlay's rendered objects (one file each)."""
    if not checkov.is_file():
        raise FileNotFoundError(f"{checkov} is missing: run `make setup`")
    with tempfile.TemporaryDirectory(prefix="mlsp-checkov-") as tmp:
        for overlay, docs in rendered.items():
            (Path(tmp) / f"{overlay}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
        cmd = [str(checkov), "-d", tmp, "--framework", "kubernetes", "--output", "json"]
        cmd += ["--quiet", "--compact", "--skip-check", ",".join(sorted(SKIPS))]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    # exit 1 means "some check failed"; anything else but 0 is checkov itself failing
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {proc.returncode}: {proc.stderr[-500:]}")
    report = json.loads(proc.stdout)
    summary = report.get("summary") or {}
    if summary.get("parsing_errors"):
        raise RuntimeError(f"checkov could not parse {summary['parsing_errors']} file(s)")
    findings = [
        Finding(Path(f["file_path"]).stem, f["check_id"], f["check_name"], f["resource"])
        for f in (report.get("results") or {}).get("failed_checks") or []
    ]
    return Result(
        findings=sorted(findings, key=str),
        passed=int(summary.get("passed", 0)),
        resources=int(summary.get("resource_count", 0)),
        version=str(summary.get("checkov_version", "")),
    )
