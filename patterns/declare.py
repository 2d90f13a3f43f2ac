"""How a pattern declares its processes, once, for every way it runs.

The same declaration drives `make run PATTERN=<id>` (patterns/runner.py), the tests' pattern
fixtures, and the check that a pattern's Kubernetes manifests run the same commands with the
same environment variable names. Env values are templates the runner fills in:

    {model:NAME}   folder of a trained model (data/models/NAME)
    {url:PROC}     base URL of another process of the same pattern
    {redis} {postgres} {mlflow}   URL of a dependency (used if reachable, else started)
    {data}         the data folder
    {workdir}      a scratch folder private to this run (an emptyDir on Kubernetes)

A process with `init=True` runs to completion, in order, before the others start, like a
Kubernetes initContainer; a non-zero exit stops the pattern. `kube_kind` says where a process
runs on Kubernetes when that is not the default (a Deployment; an initContainer when `init`):
a batch step the runner runs once as `init` is a Job or a CronJob there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Dependency = Literal["redis", "postgres", "mlflow"]
KubeKind = Literal["Deployment", "Job", "CronJob"]


@dataclass(frozen=True)
class Process:
    name: str
    """Process (and Kubernetes container) name."""
    module: str
    """Python module run as `python -m MODULE`."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment variables (names as in the manifests; values are runner templates)."""
    port: int | None = 8000
    """Container port; None for a process that serves no HTTP. Locally a free port is used."""
    ready_path: str = "/readyz"
    init: bool = False
    """Run to completion before the other processes (a Kubernetes initContainer)."""
    kube_kind: KubeKind | None = None
    """The Kubernetes workload whose (main) container runs this process. None: the default,
    an initContainer when `init`, else a long-running workload (Deployment, StatefulSet).
    "Job" or "CronJob": a step that runs to completion, e.g. a seed Job, a scoring CronJob
    (locally an `init` process) or a client Job. Checked by kube/manifests.py."""

    @property
    def command(self) -> list[str]:
        return ["python", "-m", self.module]


@dataclass(frozen=True)
class Pattern:
    id: str
    summary: str
    processes: tuple[Process, ...]
    needs: tuple[Dependency, ...] = ()
    models: tuple[str, ...] = ()
    """Trained models the pattern serves (`make models` produces them)."""
    status: str = "done"
    entry: str | None = None
    """The process clients talk to (load tests, the printed URL); default: the first one
    that serves HTTP."""
    aliases: tuple[str, ...] = ()
    """Short names that work wherever a pattern is named (`make run PATTERN=async`); an
    alias exists only once its pattern does (the catalogue lists the planned ones)."""
