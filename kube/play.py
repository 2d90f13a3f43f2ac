"""Run a rendered overlay with `podman kube play` and check it, with no cluster.

podman 4.3 (Debian bookworm) runs pods, ConfigMaps, PVCs, emptyDirs, securityContext and
limits, but needs a little preparation (see docs/kubernetes.md):

- init containers loop forever under restartPolicy Always: pods with init containers get
  `OnFailure` (the init container still runs to completion first);
- every containerPort is published on the host (a second replica clashes): ports are dropped,
  pods are reached on a podman network under their Service names (`--network N:alias=svc`,
  hence Service port == containerPort);
- only Pods and Deployments are played: each Deployment replica, each StatefulSet replica (with
  a PVC `<claim>-<name>-<i>` per volumeClaimTemplate, as the controller would make) and each
  pod of a Job or of one CronJob run (`parallelism` pods) runs as a bare Pod; Job pods' exit
  codes are checked;
- `secretKeyRef` fails (podman 4.3 expects its own JSON secrets): Secret values are inlined
  into the played pods (never into the repository's files; a deploy-time Secret gets random
  values for the run, as `make deploy` would make them), and `$(VAR)` references to earlier
  variables are expanded as the kubelet does (podman leaves them as text);
- probes cannot run faithfully (podman makes the liveness probe a `curl` healthcheck on a
  dropped port and restarts the container when it fails): probes are dropped; readiness is
  checked over HTTP from a client container on the network (httpGet) or by running the
  probe's command in the container (exec, e.g. redis-cli ping, pg_isready).

Order, as the local runner's (patterns/runner.py): StatefulSets (Redis, PostgreSQL), then the
other services no process of the pattern declares (MLflow) and their Jobs (train and
register), then the pattern's `init` steps that are Jobs or CronJobs on Kubernetes (seed,
one scoring run), then the pattern's Deployments in declaration order, then its other Jobs
(a client). Last, the pattern's smoke check, declared with its processes (`smoke=` in
patterns/<id>/pattern.py, see patterns/declare.py): the requests kube/smoke_client.py makes
through its Services, and the checks of its Jobs' logs, each judged by the pattern's judge.
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kube.manifests import (
    POD_OWNERS,
    Doc,
    containers,
    generated_secret_values,
    matches,
    pod_spec,
    replicas,
)
from kube.report import Checks, podman
from patterns.declare import Call, Pattern

CLIENT = Path(__file__).with_name("smoke_client.py")
"""Runs in a container on the pods' network, from its source (`python -c`); prints one JSON
object, the caller judges it."""
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
DEPENDENT_ENV = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def secret_values(docs: list[Doc]) -> dict[tuple[str, str], str]:
    values = {}
    for doc in docs:
        if doc["kind"] == "Secret":
            name = doc["metadata"]["name"]
            for key, value in (doc.get("data") or {}).items():
                values[(name, key)] = base64.b64decode(value).decode()
            for key, value in (doc.get("stringData") or {}).items():
                values[(name, key)] = str(value)
    return values


def resolve_env(env: list[dict[str, Any]], secrets: dict[tuple[str, str], str]) -> None:
    """Inline secretKeyRef values and expand $(VAR) of earlier variables, like the kubelet."""
    seen: dict[str, str] = {}
    for var in env:
        ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            var.pop("valueFrom")
            var["value"] = secrets[(ref["name"], ref["key"])]
        if "value" in var:
            var["value"] = DEPENDENT_ENV.sub(
                lambda m: "$" if m.group(0) == "$$" else seen.get(m.group(1), m.group(0)),
                str(var["value"]),
            )
            seen[var["name"]] = var["value"]


def fix_pod(
    pod: dict[str, Any], secrets: dict[tuple[str, str], str] | None = None
) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    if pod.get("initContainers") and pod.get("restartPolicy", "Always") == "Always":
        pod["restartPolicy"] = "OnFailure"
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        c.pop("ports", None)
        # podman turns a liveness probe into a `curl` healthcheck (no curl in our images;
        # named ports become port 0 once ports are dropped) and restarts the container when
        # it fails: drop probes, readiness is checked by play() instead
        for probe in PROBES:
            c.pop(probe, None)
        resolve_env(c.get("env") or [], secrets or {})
    return pod


def services_for(doc: Doc, docs: list[Doc]) -> list[Doc]:
    labels = pod_spec(doc)[0]
    return [
        s
        for s in docs
        if s["kind"] == "Service" and matches((s.get("spec") or {}).get("selector") or {}, labels)
    ]


def declared(doc: Doc, pattern: Pattern) -> list[str]:
    """Names of the pattern's processes this workload runs as its main containers (not an
    init container that runs a process too, like data_cache's seed before its warm-up)."""
    names = {c["name"] for c in pod_spec(doc)[1].get("containers") or []}
    return [p.name for p in pattern.processes if p.name in names]


def play_order(docs: list[Doc], pattern: Pattern) -> list[Doc]:
    """Workloads in the order they start (see the module docstring)."""
    init = {p.name for p in pattern.processes if p.init and p.kube_kind}
    rank = {p.name: i for i, p in enumerate(pattern.processes)}

    def key(doc: Doc) -> tuple[int, int]:
        procs = declared(doc, pattern)
        first = min((rank[p] for p in procs), default=0)
        if doc["kind"] == "StatefulSet":
            return 0, first
        if not procs:  # a component: MLflow, its training Job
            return (1 if doc["kind"] == "Deployment" else 2), first
        if set(procs) & init:
            return 3, first
        return (4 if doc["kind"] == "Deployment" else 5), first

    workloads = [d for d in docs if d["kind"] in {"StatefulSet", "Deployment", "Job", "CronJob"}]
    return sorted(workloads, key=key)  # stable: same rank keeps the rendered order


class Player:
    def __init__(self, overlay: str, docs: list[Doc], workdir: Path) -> None:
        self.overlay = overlay
        self.docs = docs
        self.workdir = workdir
        self.net = f"mlsp-play-{overlay.replace('_', '-')}"
        self.files: list[Path] = []
        self.volumes: set[str] = set()
        self.secrets = {**generated_secret_values(), **secret_values(docs)}
        self._subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self._fixed = 0
        self.client_source = CLIENT.read_text()
        self.hosts: dict[str, str] = {}
        """Service name -> fixed address of a StatefulSet pod, for the pods played after it."""
        # the smoke client runs in one of the overlay's own images that has httpx: a serving
        # one, else the training image (batch_training runs nothing else)
        images = [
            c["image"]
            for d in docs
            if d["kind"] in POD_OWNERS
            for _, c in containers(pod_spec(d)[1])
        ]
        preferred = r"/mlsp-(serving|model-in-image|batch)[-a-z0-9]*:"
        self.client_image = next(
            (i for i in images if re.search(preferred, i)),
            next((i for i in images if re.search(r"/mlsp-training[-a-z0-9]*:", i)), ""),
        )

    def _write(self, name: str, docs: list[Doc]) -> Path:
        path = self.workdir / f"{self.overlay}-{name}.yaml"
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        self.files.append(path)
        return path

    def private_volumes(self, spec: dict[str, Any], prefix: str) -> None:
        """Give the pod's emptyDirs names of their own: podman 4.3 turns an emptyDir into a
        volume named after it, shared by every pod that declares the same name."""
        renamed = {}
        for vol in spec.get("volumes") or []:
            if "emptyDir" in vol:
                renamed[vol["name"]] = vol["name"] = f"{prefix}-{vol['name']}"
                self.volumes.add(vol["name"])
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            for mount in c.get("volumeMounts") or []:
                mount["name"] = renamed.get(mount["name"], mount["name"])

    def configmaps(self) -> list[Doc]:
        return [d for d in self.docs if d["kind"] == "ConfigMap"]

    def pod(self, name: str, template: dict[str, Any], restart: str | None = None) -> Doc:
        spec = fix_pod(template["spec"], self.secrets)
        if restart:
            spec["restartPolicy"] = restart
        self.private_volumes(spec, name)
        meta = {"name": name, "labels": (template.get("metadata") or {}).get("labels")}
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}

    def kube_play(
        self, name: str, docs: list[Doc], aliases: list[str], fixed: int = 0
    ) -> tuple[bool, str]:
        """`podman kube play` the docs on the pods' network under the Service `aliases`. The
        first `fixed` pods (a StatefulSet's) get an address and MAC of their own, and every
        pod played later resolves the aliases to the first one's address from /etc/hosts."""
        addresses = [self.fixed_address() for _ in range(fixed)]
        if addresses:
            self.hosts.update({alias: addresses[0][0] for alias in aliases})
        hosts = [{"ip": ip, "hostnames": [h for h, a in self.hosts.items() if a == ip]}
                 for ip in sorted(set(self.hosts.values()))]  # fmt: skip
        for doc in docs:
            if doc["kind"] == "Pod" and hosts:
                doc["spec"]["hostAliases"] = hosts
        path = self._write(name, docs)
        network = self.net + (":" + ",".join(f"alias={a}" for a in aliases) if aliases else "")
        flags = [f for ip, mac in addresses for f in ("--ip", ip, "--mac-address", mac)]
        result = podman("kube", "play", "--replace", "--network", network, *flags, str(path))
        return result.returncode == 0, (result.stderr or result.stdout)[-1500:]

    def fixed_address(self) -> tuple[str, str]:
        """A StatefulSet pod's address, from the top of the network's subnet down (podman
        hands out the others from the bottom up), and a locally administered MAC.

        A kube-play pod whose last container exits loses its network (the pod's exit policy
        stops its infra container) and, restarted, would get a new address; podman's DNS
        (aardvark-dns 1.4) was then seen to take 5 s per lookup from some client pods, past
        every connect timeout. A fixed address and MAC keep the pod's identity across a
        restart, as a container restart inside a Kubernetes pod does, and the clients find
        it in /etc/hosts (`hostAliases`), as a Service name keeps one stable address."""
        if self._subnet is None:
            out = podman("network", "inspect", self.net, "--format",
                         "{{range .Subnets}}{{.Subnet}} {{end}}")  # fmt: skip
            self._subnet = ipaddress.ip_network(out.stdout.split()[0])
        self._fixed += 1
        ip = self._subnet.broadcast_address - 1 - self._fixed
        return str(ip), f"02:6d:6c:73:00:{self._fixed:02x}"

    def play_replicas(self, doc: Doc) -> tuple[bool, str, list[str]]:
        """A Deployment or StatefulSet: each replica its own Pod, emptyDirs and (StatefulSet)
        PVCs; returns (ok, detail, pod names)."""
        template = doc["spec"]["template"]
        name = doc["metadata"]["name"]
        claims = {
            (v.get("persistentVolumeClaim") or {}).get("claimName")
            for v in template["spec"].get("volumes") or []
        }
        extra = [
            d
            for d in self.docs
            if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] in claims
        ]
        pods = []
        for i in range(replicas(doc, self.docs)):
            pod = self.pod(f"{name}-{i}", template)
            for claim in doc["spec"].get("volumeClaimTemplates") or []:
                pvc = copy.deepcopy(claim)
                pvc_name = f"{claim['metadata']['name']}-{name}-{i}"
                pvc.update(apiVersion="v1", kind="PersistentVolumeClaim")
                pvc["metadata"] = {"name": pvc_name}
                extra.append(pvc)
                self.volumes.add(pvc_name)
                pod["spec"].setdefault("volumes", []).append(
                    {
                        "name": claim["metadata"]["name"],
                        "persistentVolumeClaim": {"claimName": pvc_name},
                    }
                )
            pods.append(pod)
        aliases = [s["metadata"]["name"] for s in services_for(doc, self.docs)]
        fixed = len(pods) if doc["kind"] == "StatefulSet" else 0
        ok, detail = self.kube_play(name, [*self.configmaps(), *extra, *pods], aliases, fixed)
        return ok, detail, [p["metadata"]["name"] for p in pods]

    def play_job(self, doc: Doc) -> list[tuple[str, int, str]]:
        """A Job, or one run of a CronJob: its `parallelism` pods as bare Pods, run to the end;
        returns (pod, exit code, log tail) per pod."""
        spec = doc["spec"]
        if doc["kind"] == "CronJob":
            spec = spec["jobTemplate"]["spec"]
        name = f"job-{doc['metadata']['name']}"
        pods = [
            self.pod(f"{name}-{i}", spec["template"], restart="Never")
            for i in range(spec.get("parallelism", 1))
        ]
        ok, detail = self.kube_play(name, [*self.configmaps(), *pods], [])
        if not ok:
            return [(name, -1, detail)]
        deadline = float(spec.get("activeDeadlineSeconds", 600))
        out = []
        for pod in pods:
            container = f"{pod['metadata']['name']}-{pod['spec']['containers'][0]['name']}"
            code = podman("wait", container, timeout=deadline + 30).stdout.strip()
            logs = podman("logs", container)
            tail = (logs.stdout + logs.stderr)[-1500:]
            out.append(
                (pod["metadata"]["name"], int(code) if code.lstrip("-").isdigit() else -1, tail)
            )
        return out

    def client(
        self, mode: str, url: str, *args: str, image: str | None = None, timeout: float = 60
    ) -> tuple[bool, str]:
        run = ["run", "--rm", "--network", self.net, "--read-only", "--entrypoint", "python"]
        run += [image or self.client_image, "-c", self.client_source, mode, url, *args]
        result = podman(*run, timeout=timeout + 60)
        if result.returncode == 0:
            return True, result.stdout.strip()
        return False, (result.stdout.strip() or result.stderr.strip())[-1500:]

    def exec_probe(self, container: str, command: list[str], timeout: float) -> tuple[bool, str]:
        """Run an exec probe's command in the container until it succeeds."""
        deadline = time.monotonic() + timeout
        while True:
            result = podman("exec", container, *command, timeout=30)
            if result.returncode == 0:
                return True, ""
            if time.monotonic() > deadline:
                return False, (result.stdout + result.stderr)[-500:] or f"exit {result.returncode}"
            time.sleep(1)

    def pod_containers(self, pod: str) -> list[dict[str, Any]]:
        out = podman("ps", "-a", "--format", "json").stdout
        return [
            c
            for c in json.loads(out or "[]")
            if not c.get("IsInfra") and c["Names"][0].startswith(f"{pod}-")
        ]

    def teardown(self) -> None:
        for path in reversed(self.files):
            podman("kube", "down", str(path))
        names = {
            d["metadata"]["name"]
            for d in self.docs
            if d["kind"] in {"ConfigMap", "PersistentVolumeClaim"}
        }
        for name in sorted(names | self.volumes):
            podman("volume", "rm", "-f", name)
        podman("network", "rm", "-f", self.net)


def _service_url(svc: Doc) -> str:
    port = svc["spec"]["ports"][0]["port"]
    return f"http://{svc['metadata']['name']}:{port}"


def _run_replicas(player: Player, doc: Doc, result: Checks, timeout: float) -> bool:
    """Play a Deployment or StatefulSet; check readiness (printing how long after `kube play`
    it came: an upper bound, it includes starting the checking container), the pod count and
    the uid."""
    name, kind = doc["metadata"]["name"], doc["kind"]
    t0 = time.monotonic()
    ok, detail, pods = player.play_replicas(doc)
    if not result.add(f"kube play {kind} {name}", ok, "" if ok else detail):
        return False
    ready = True
    main = pod_spec(doc)[1]["containers"][0]
    probe = main.get("readinessProbe") or {}
    if "exec" in probe:  # run the probe's own command in each replica
        for pod in pods:
            command = probe["exec"]["command"]
            ok, detail = player.exec_probe(f"{pod}-{main['name']}", command, timeout)
            detail = f"{time.monotonic() - t0:.1f} s after kube play" if ok else detail
            ready &= result.add(f"{pod} ready ({' '.join(command)[:60]})", ok, detail)
    else:
        path = str((probe.get("httpGet") or {}).get("path", "/readyz"))
        for svc in services_for(doc, player.docs):
            ok, detail = player.client("ready", _service_url(svc), path, str(timeout))
            detail = f"{time.monotonic() - t0:.1f} s after kube play" if ok else detail
            ready &= result.add(f"Service {svc['metadata']['name']} {path} 200", ok, detail)
    running = {pod: player.pod_containers(pod) for pod in pods}
    started = [p for p, cs in running.items() if any(c.get("State") == "running" for c in cs)]
    result.add(
        f"{kind} {name} runs {len(pods)} pod(s)",
        len(started) == len(pods),
        f"running: {started}",
    )
    for c in (c for cs in running.values() for c in cs):
        if c.get("State") == "running":
            uid = podman("exec", c["Names"][0], "id", "-u").stdout.strip()
            result.add(f"{c['Names'][0]} runs as uid 10001", uid == "10001", uid)
    return ready


REDIS_MEMORY = ("maxmemory", "maxmemory-policy")


def redis_memory(doc: Doc, docs: list[Doc]) -> dict[str, str]:
    """The memory settings a redis-server StatefulSet is configured with: the redis.conf of
    its ConfigMap when the first argument is a file (components/redis-cache), then its
    command-line options, which win (components/redis)."""
    _, pod = pod_spec(doc)
    c = pod["containers"][0]
    args = [str(a) for a in c.get("args") or []]
    settings: dict[str, str] = {}
    if args and not args[0].startswith("-"):
        folder, _, filename = args[0].rpartition("/")
        mount = next(m for m in c.get("volumeMounts") or [] if m["mountPath"] == folder)
        volume = next(v for v in pod.get("volumes") or [] if v["name"] == mount["name"])
        cm = next(
            d
            for d in docs
            if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
        )
        for line in str(cm["data"][filename]).splitlines():
            key, _, value = line.strip().partition(" ")
            if key in REDIS_MEMORY:
                settings[key] = value.strip()
    for i, arg in enumerate(args[:-1]):
        if arg.startswith("--") and arg[2:] in REDIS_MEMORY:
            settings[arg[2:]] = args[i + 1]
    return settings


def _check_redis_memory(player: Player, doc: Doc, result: Checks) -> None:
    """The running Redis has the memory settings of its manifest (CONFIG GET)."""
    want = redis_memory(doc, player.docs)
    container = f"{doc['metadata']['name']}-0-{pod_spec(doc)[1]['containers'][0]['name']}"
    cli = ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "--raw", "config", "get"]
    got = {}
    for key in REDIS_MEMORY:
        lines = podman("exec", container, *cli, key).stdout.split()
        got[key] = lines[1] if len(lines) > 1 else ""
    # maxmemory is configured as e.g. 400mb and reported in bytes
    units = {"kb": 1024, "mb": 1024**2, "gb": 1024**3}
    size = want.get("maxmemory", "")
    unit = size[-2:].lower()
    want_bytes = str(int(size[:-2]) * units[unit]) if unit in units else size
    ok = got.get("maxmemory-policy") == want.get("maxmemory-policy") and (
        got.get("maxmemory") == want_bytes
    )
    result.add(
        f"{container} runs with the manifest's memory settings",
        ok,
        f"maxmemory-policy {got.get('maxmemory-policy')}, maxmemory {got.get('maxmemory')} "
        f"(configured: {want})",
    )


def _run_job(player: Player, doc: Doc, result: Checks) -> list[str]:
    """Play a Job (or one CronJob run); every pod must exit 0. Returns the pods' logs."""
    what = f"{doc['kind']} {doc['metadata']['name']}"
    runs = player.play_job(doc)
    for pod, code, logs in runs:
        last = next((ln for ln in reversed(logs.splitlines()) if ln.strip()), "")
        result.add(f"{what}: pod {pod} exits 0", code == 0, last[-240:] if code == 0 else logs)
    return [logs for _, _, logs in runs]


# --- the pattern's smoke check (`smoke=` in patterns/<id>/pattern.py) ------------------------

TEMPLATE = re.compile(r"\{(service|card:[\w-]+|env:[\w-]+:\w+)\}")
"""The templates of a declared Call's `args` and `what` (patterns/declare.py)."""


@dataclass(frozen=True)
class Request:
    """A declared Call with its templates filled in from the rendered overlay."""

    mode: str
    url: str
    args: tuple[str, ...]
    what: str
    image: str | None
    """The image the client runs in: the one whose model card it reads; None: any."""


def _container_env(docs: list[Doc], process: str, var: str) -> tuple[str, str]:
    """(image, value of `var`) of the first container named `process` that sets `var`."""
    for doc in docs:
        if doc["kind"] in POD_OWNERS:
            for _, c in containers(pod_spec(doc)[1]):
                env = {e["name"]: e.get("value") for e in c.get("env") or []}
                if c["name"] == process and env.get(var):
                    return c["image"], str(env[var])
    raise LookupError(f"no container {process} with {var}")


def request_for(call: Call, pattern: Pattern, docs: list[Doc]) -> Request:
    """Fill in the call's Service URL and templates from the overlay; LookupError if the
    overlay has no such Service or container."""
    service = call.service or pattern.id.replace("_", "-")
    svc = next(
        (d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == service), None
    )
    if svc is None:
        raise LookupError(f"no Service {service}")
    images: set[str] = set()

    def fill(match: re.Match[str]) -> str:
        kind, _, rest = match.group(1).partition(":")
        if kind == "service":
            return service
        if kind == "card":  # the card is a file in that process's image
            image, folder = _container_env(docs, rest, "MLSP_MODEL_DIR")
            images.add(image)
            return f"{folder}/model.json"
        process, _, var = rest.partition(":")
        return _container_env(docs, process, var)[1]

    args = tuple(TEMPLATE.sub(fill, arg) for arg in call.args)
    what = TEMPLATE.sub(fill, call.what)
    if len(images) > 1:
        raise LookupError(f"model cards in several images {sorted(images)}: one client runs")
    return Request(call.mode, _service_url(svc), args, what, next(iter(images), None))


def _status(raw: str) -> Any:
    try:
        return json.loads(raw.splitlines()[-1]).get("status")
    except (ValueError, IndexError, AttributeError):
        return None


def _ask(player: Player, request: Request, retries: int) -> tuple[bool, str]:
    """Run the client; while the answer is 503, ask again, 5 s apart, `retries` times."""
    for attempt in range(retries + 1):
        ok, raw = player.client(
            request.mode, request.url, *request.args, image=request.image, timeout=90
        )
        if not ok or attempt == retries or _status(raw) != 503:
            break
        time.sleep(5)
    return ok, raw


def _judged(call: Call, raw: str) -> tuple[bool, str, Any]:
    """The judge's verdict on the client's last output line, and that line parsed."""
    try:
        out = json.loads(raw.splitlines()[-1])
        good, detail = call.judge(out)
    except (ValueError, IndexError, AttributeError, TypeError, KeyError) as exc:
        return False, f"unexpected answer ({exc!r})", None
    return good, detail, out


def smoke_call(player: Player, pattern: Pattern, call: Call, result: Checks) -> None:
    """Make one declared request through the running pattern and judge its answer."""
    try:
        request = request_for(call, pattern, player.docs)
    except LookupError as exc:
        result.add(call.what, False, f"the declared call does not fit the overlay: {exc}")
        return
    for attempt in range(call.retries + 1 if call.until_judged else 1):
        if attempt:
            time.sleep(5)
        ok, raw = _ask(player, request, call.retries)
        if not ok:
            detail = " | ".join(filter(None, (raw, _reach_stateful(player))))
            result.add(request.what, False, detail)
            return
        good, detail, out = _judged(call, raw)
        if good:
            break
    result.add(request.what, good, detail if good else f"{detail}; {raw[-600:]}")
    if good and call.durable:
        ticket = out.get("ticket") if isinstance(out, dict) else None
        status_url = ticket.get("status_url") if isinstance(ticket, dict) else None
        if not isinstance(status_url, str):
            result.add("the job survives a Redis restart", False, "the answer names no job")
            return
        _check_redis_durable(player, request.url, status_url, result)


def check_logs(pattern: Pattern, doc: Doc, logs: list[str], result: Checks) -> None:
    """The pattern's declared checks of this Job's pod logs (a client Job's summary line)."""
    for check in pattern.smoke.logs:
        if check.process not in declared(doc, pattern):
            continue
        for log in logs:
            try:
                good, detail = check.judge(log)
            except (ValueError, IndexError, AttributeError, TypeError, KeyError) as exc:
                good, detail = False, f"unexpected log ({exc!r}): {log[-300:]}"
            result.add(check.what, good, detail)


def _check_redis_durable(player: Player, url: str, status_url: str, result: Checks) -> None:
    """The finished job survives `kill -9` of Redis: the append-only file (fsync every second)
    on the StatefulSet's volume, replayed at restart."""
    sts = next((d for d in player.docs if d["kind"] == "StatefulSet"), None)
    if sts is None:
        return
    pod = f"{sts['metadata']['name']}-0"
    container = f"{pod}-{pod_spec(sts)[1]['containers'][0]['name']}"
    time.sleep(2)  # past appendfsync everysec
    podman("kill", "--signal", "KILL", container)
    podman("wait", container, timeout=30)
    # A kube-play pod stops its infra container (its network, Service alias included) once its
    # last container exits; starting the container while that stop is still under way races
    # it and leaves Redis without a network. So: wait until the pod has stopped, then start it
    # again, as the kubelet restarts a container inside its pod (same Service name, and the
    # same address and MAC: Player.fixed_address).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and _pod_state(pod) not in ("Exited", "Stopped", ""):
        time.sleep(0.2)
    started = podman("pod", "start", pod)
    probe = pod_spec(sts)[1]["containers"][0]["readinessProbe"]["exec"]["command"]
    ready, detail = player.exec_probe(container, probe, 60)
    if started.returncode != 0:
        ready, detail = False, f"podman pod start {pod}: {started.stderr.strip()[-300:]}"
    body: Any = {}
    ok, raw = False, detail
    deadline = time.monotonic() + 30
    while ready and time.monotonic() < deadline:  # the API reconnects (503 until then)
        ok, raw = player.client("get", url, status_url)
        body = json.loads(raw.splitlines()[-1]).get("body", {}) if ok else {}
        if isinstance(body, dict) and "status" in body:
            break
        time.sleep(1)
    good = started.returncode == 0 and isinstance(body, dict) and body.get("status") == "done"
    detail = json.dumps(body)[:200] if ok else raw[-300:]
    if not good:
        detail += " | " + _reach(player, sts["metadata"]["name"], pod, 6379)
    result.add(f"after kill -9 and restart of {container}, GET {status_url} is still done",
               good, detail)  # fmt: skip


def _reach_stateful(player: Player) -> str:
    """`_reach` for each StatefulSet's Service (Redis, PostgreSQL): why a client failed."""
    seen = [
        _reach(player, svc["metadata"]["name"], f"{sts['metadata']['name']}-0",
               int(svc["spec"]["ports"][0]["port"]))
        for sts in player.docs
        if sts["kind"] == "StatefulSet"
        for svc in services_for(sts, player.docs)
    ]  # fmt: skip
    return " | ".join(seen)


def _reach_line(out: subprocess.CompletedProcess[str]) -> str:
    try:
        return str(json.loads(out.stdout.splitlines()[-1])["reach"])
    except (ValueError, IndexError, KeyError, TypeError):
        return (out.stdout + out.stderr).strip()[-300:]


def _reach(player: Player, service: str, pod: str, port: int) -> str:
    """Why the clients cannot reach a restarted pod: what its Service name resolves to and
    whether that address accepts a connection, seen from a fresh container on the pods'
    network and from inside each client pod (with its ARP table), and the pod's address."""
    run = ["run", "--rm", "--network", player.net, "--entrypoint", "python", player.client_image]
    probe = ["-c", player.client_source, "reach", service, str(port)]
    seen = [f"fresh: {_reach_line(podman(*run, *probe, timeout=60))}"]
    for c in json.loads(podman("ps", "--format", "json").stdout or "[]"):
        name = c["Names"][0]
        if name.startswith(pod) or name.endswith("-infra") or not re.search(r"-\d+-", name):
            continue
        out = podman("exec", name, "python", *probe, timeout=60)
        arp = podman("exec", name, "cat", "/proc/net/arp", timeout=30).stdout.split("\n")[1:]
        seen.append(f"{name}: {_reach_line(out)} arp {arp}")
    infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
    ip = podman(
        "inspect", infra, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    )
    return " | ".join(seen) + f" | pod {pod} address {ip.stdout.strip()!r}"


def _pod_state(pod: str) -> str:
    return podman("pod", "inspect", pod, "--format", "{{.State}}").stdout.strip()


def play(overlay: str, docs: list[Doc], *, timeout: float = 180) -> Checks:
    """Run the overlay and check that pods become ready and answer and that Jobs exit 0."""
    from patterns.runner import load as load_pattern

    pattern = load_pattern(overlay)
    result = Checks(indent="  ")
    with tempfile.TemporaryDirectory(prefix="mlsp-play-") as tmp:
        player = Player(overlay, docs, Path(tmp))
        podman("network", "rm", "-f", player.net)  # left by an interrupted run
        podman("network", "create", player.net, check=True)
        try:
            healthy = True
            for doc in play_order(docs, pattern):
                if doc["kind"] in {"Deployment", "StatefulSet"}:
                    up = _run_replicas(player, doc, result, timeout)
                    healthy &= up
                    command = pod_spec(doc)[1]["containers"][0].get("command")
                    if up and doc["kind"] == "StatefulSet" and command == ["redis-server"]:
                        _check_redis_memory(player, doc, result)
                else:
                    check_logs(pattern, doc, _run_job(player, doc, result), result)
            if healthy:
                for call in pattern.smoke.calls:
                    smoke_call(player, pattern, call, result)
        finally:
            player.teardown()
    return result
