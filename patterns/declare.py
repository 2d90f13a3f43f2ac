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

`smoke` says how the container tier (`make verify`: kube/play.py under podman kube play)
judges the running pattern: the requests kube/smoke_client.py makes once every workload is up,
and the checks of its Job processes' logs. patterns/smoke.py builds the common ones.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Dependency = Literal["redis", "postgres", "mlflow", "alertmanager", "prometheus"]
"""What a local run starts before the processes (patterns/runner.py ENSURE); Prometheus and
Alertmanager are local stand-ins for a cluster's monitoring stack (patterns/alerting.py)."""
KubeKind = Literal["Deployment", "Job", "CronJob"]
ClientMode = Literal["predict", "job", "sync_async", "images", "requests", "get", "post"]
Verdict = tuple[bool, str]
"""Whether a smoke check passed, and what to print about it."""


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
class Call:
    """One request of the pattern's smoke check, made once every workload runs, from a
    container on the pods' network (kube/smoke_client.py), and how to judge the answer."""

    mode: ClientMode
    """What the client does (kube/smoke_client.py): predict (POST /predict), job (POST /jobs,
    poll the ticket), sync_async (POST /predict, poll its final_url), images (POST
    /predict/image, one PNG per row), requests (POST each {path, json}), get (GET a path),
    post (POST a JSON body to a path)."""
    args: tuple[str, ...]
    """The client's arguments after the Service URL. Templates: {card:PROC} the model card
    (golden examples) in PROC's image, and the client then runs in that image; {env:PROC:VAR}
    the value of VAR in PROC's container in the rendered manifests."""
    judge: Callable[[Mapping[str, Any]], Verdict]
    """Reads the client's JSON answer."""
    what: str
    """The printed check; {service} and the templates of `args` are filled in."""
    service: str | None = None
    """The Service called; default: the entry Service, named after the pattern (`-` for `_`)."""
    retries: int = 0
    """Times to ask again, 5 s apart, while the answer is 503 (the Service says: come back)."""
    until_judged: bool = False
    """Also ask again (the same `retries` times, 5 s apart) while the judge says no: what the
    call reads is written off the request path (shadow_ab's pairs, batched into a table)."""
    durable: bool = False
    """The answer is a finished job (`ticket.status_url`): then the pattern's StatefulSet
    (Redis) is killed with SIGKILL and restarted, and the job must still be done."""


@dataclass(frozen=True)
class JobLog:
    """A check of the log of each pod of a Job process (a client Job's summary line)."""

    process: str
    judge: Callable[[str], Verdict]
    what: str


@dataclass(frozen=True)
class Smoke:
    """The end-to-end checks of a running pattern (see the module docstring)."""

    calls: tuple[Call, ...] = ()
    """Requests through the pattern's Services, in order, once every workload runs."""
    logs: tuple[JobLog, ...] = ()
    """Checks of Job pods' logs, as each Job ends."""


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
    public: tuple[str, ...] = ()
    """Other processes clients reach from outside, like the entry (their Services admit any
    source: kube/netpol.py), e.g. prediction_monitoring's api next to its monitor."""
    aliases: tuple[str, ...] = ()
    """Short names that work wherever a pattern is named (`make run PATTERN=async`); an
    alias exists only once its pattern does (the catalogue lists the planned ones)."""
    smoke: Smoke = field(default_factory=Smoke)
    """How `make verify` judges the pattern running under podman kube play."""
