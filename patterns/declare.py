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
Kubernetes initContainer; a non-zero exit stops the pattern.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Dependency = Literal["redis", "postgres", "mlflow"]


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
