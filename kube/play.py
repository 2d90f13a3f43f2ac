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
  into the played pods (never into the repository's files), and `$(VAR)` references to earlier
  variables are expanded as the kubelet does (podman leaves them as text);
- probes cannot run faithfully (podman makes the liveness probe a `curl` healthcheck on a
  dropped port and restarts the container when it fails): probes are dropped; readiness is
  checked over HTTP from a client container on the network (httpGet) or by running the
  probe's command in the container (exec, e.g. redis-cli ping, pg_isready).

Order, as the local runner's (patterns/runner.py): StatefulSets (Redis, PostgreSQL), then the
other services no process of the pattern declares (MLflow) and their Jobs (train and
register), then the pattern's `init` steps that are Jobs or CronJobs on Kubernetes (seed,
one scoring run), then the pattern's Deployments in declaration order, then its other Jobs
(a client). Last, one end-to-end request per pattern through its entry Service (FUNCTIONAL).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import json
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from kube.images import image_key
from kube.manifests import POD_OWNERS, Doc, containers, matches, pod_spec
from kube.report import Checks, podman
from patterns.declare import Pattern

# Runs in a container on the pods' network; prints one JSON object, the caller judges it.
CLIENT = r"""
import json, sys, time, urllib.error, urllib.request

def exchange(method, url, body=None, timeout=5.0, media="application/json"):
    headers = {"content-type": media} if body is not None else {}
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), r.headers
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers

def call(method, url, body=None, timeout=5.0):
    return exchange(method, url, body, timeout)[:2]

def label_of(raw):
    body = body_of(raw)
    preds = body.get("predictions") if isinstance(body, dict) else None
    return preds[0].get("label") if preds else None

def png(values, side):
    # an 8x8 digit (0..16) drawn as the seed of data_cache draws it, scaled up to side x side
    import io
    from PIL import Image
    img = Image.new("L", (8, 8))
    img.putdata([round(v * 255 / 16) for v in values])
    buf = io.BytesIO()
    img.resize((side, side), Image.Resampling.NEAREST).save(buf, format="PNG")
    return buf.getvalue()

def body_of(raw):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")[:300]

def rows(arg):
    # a model card path (golden examples, as the model answered them at build time) or JSON
    if arg.endswith(".json"):
        golden = json.load(open(arg))["golden"]
        return [g["input"] for g in golden], [g["label"] for g in golden]
    spec = json.loads(arg)
    return spec["instances"], spec["labels"]

def poll(url, seconds):
    deadline = time.time() + seconds
    while True:
        status, raw = call("GET", url)
        job = body_of(raw)
        if status != 200 or not isinstance(job, dict) or job.get("status") != "pending":
            return status, job
        if time.time() > deadline:
            return status, job
        time.sleep(0.2)

mode, base, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if mode == "ready":
    path, deadline, err = args[0], time.time() + float(args[1]), None
    while True:
        try:
            status, raw = call("GET", base + path, timeout=2)
            if status == 200:
                break
            err = f"{status} {raw[:200]!r}"
        except Exception as e:
            err = repr(e)
        if time.time() > deadline:
            sys.exit(f"{base}{path} not ready after {args[1]} s: {err}")
        time.sleep(0.5)
    out = {"ready": True}
elif mode == "predict":  # POST /predict: the labels the model gives
    instances, labels = rows(args[0])
    status, raw = call("POST", base + "/predict", json.dumps({"instances": instances}).encode())
    out = {"status": status, "body": body_of(raw), "expected": labels}
elif mode == "job":  # asynchronous: POST /jobs -> 202 + Location, poll until terminal
    instances, labels = rows(args[0])
    status, raw = call("POST", base + "/jobs", json.dumps({"instances": instances}).encode())
    ticket = body_of(raw)
    out = {"status": status, "ticket": ticket, "expected": labels}
    if status == 202:
        out["final_status"], out["final"] = poll(base + ticket["status_url"], float(args[1]))
elif mode == "sync_async":  # POST /predict: the fast answer now, the final one by polling
    instances, labels = rows(args[0])
    started = time.time()
    status, raw = call("POST", base + "/predict", json.dumps({"instances": instances}).encode())
    answer = body_of(raw)
    out = {"status": status, "answer": answer, "expected": labels,
           "fast_ms": round((time.time() - started) * 1000)}
    if status == 200 and isinstance(answer, dict) and answer.get("final_url"):
        out["final_status"], out["final"] = poll(base + answer["final_url"], float(args[1]))
elif mode == "images":  # POST /predict/image: each golden digit as a 64x64 PNG
    instances, labels = rows(args[0])
    answers = []
    for values in instances:
        status, raw, _ = exchange("POST", base + "/predict/image", png(values, 64), 10, "image/png")
        answers.append({"status": status, "label": label_of(raw)})
    out = {"answers": answers, "expected": labels}
elif mode == "requests":  # POST each {path, json} in order: status, X-Cache, labels
    answers = []
    for step in json.loads(args[0]):
        body = json.dumps(step["json"]).encode()
        status, raw, headers = exchange("POST", base + step["path"], body)
        answer = body_of(raw)
        preds = answer.get("predictions") if isinstance(answer, dict) else None
        answers.append({"status": status, "x_cache": headers.get("x-cache"),
                        "labels": [p.get("label") for p in preds] if preds else None,
                        "sent": step["json"], "expect": step.get("expect")})
    out = {"answers": answers}
elif mode == "get":
    started = time.time()
    status, raw = call("GET", base + args[0], timeout=30)
    out = {"status": status, "body": body_of(raw), "ms": round((time.time() - started) * 1000)}
else:
    sys.exit(f"unknown mode {mode}")
print(json.dumps(out))
"""

IRIS_ROW = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]], "labels": ["setosa"]})
# One iris of each class; each one-vs-rest model gives its own class the highest probability.
IRIS_CLASSES = json.dumps(
    {
        "instances": [[5.1, 3.5, 1.4, 0.2], [7.0, 3.2, 4.7, 1.4], [6.3, 3.3, 6.0, 2.5]],
        "labels": ["setosa", "versicolor", "virginica"],
    }
)
# An inlier (iris-ocsvm score 0.42) and an outlier (-0.20, below the gate's 0.0): the outlier
# is "unknown" and never reaches stage 2.
SERIAL_ROWS = json.dumps(
    {"instances": [[5.1, 3.4, 1.5, 0.2], [7.0, 3.2, 4.7, 1.4]], "labels": ["setosa", "unknown"]}
)
# The same row twice: the model's answer, then the cached one (a fresh Redis).
CACHE_REQUESTS = json.dumps(
    [
        {"path": "/predict", "json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}, "expect": e}
        for e in (
            {"status": 200, "x_cache": "MISS", "labels": ["setosa"]},
            {"status": 200, "x_cache": "HIT", "labels": ["setosa"]},
        )
    ]
)
# data_cache after its seed (MLSP_SEED_ITEMS=200) and warm-up (MLSP_WARMUP_LIMIT=100, in id
# order): digit-0001 was warmed up (a hit on its first request), digit-0150 was not (a miss,
# then a hit); an unknown id is 404, an id that could be a path 422.
ITEM_REQUESTS = json.dumps(
    [
        {"path": "/predict/item", "json": {"item_id": item}, "expect": expect}
        for item, expect in (
            ("digit-0001", {"status": 200, "x_cache": "HIT"}),
            ("digit-0150", {"status": 200, "x_cache": "MISS"}),
            ("digit-0150", {"status": 200, "x_cache": "HIT"}),
            ("digit-9999", {"status": 404}),
            ("../x", {"status": 422}),
        )
    ]
)
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


def with_images(docs: list[Doc], images: dict[str, str]) -> list[Doc]:
    """Point every container at the built image of the same repository (and baked model)."""
    by_key = {image_key(ref): ref for ref in images.values()}
    out = copy.deepcopy(docs)
    for doc in out:
        if doc["kind"] in POD_OWNERS:
            pod = pod_spec(doc)[1]
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                c["image"] = by_key.get(image_key(c["image"]), c["image"])
    return out


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
        self.secrets = secret_values(docs)
        self._subnet: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
        self._fixed = 0
        self.hosts: dict[str, str] = {}
        """Service name -> fixed address of a StatefulSet pod, for the pods played after it."""
        self.client_image = next(
            c["image"]
            for d in docs
            if d["kind"] in POD_OWNERS
            for _, c in containers(pod_spec(d)[1])
            if re.search(r"/mlsp-(serving|model-in-image|batch):", c["image"])
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
        for i in range(doc["spec"].get("replicas", 1)):
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
        run += [image or self.client_image, "-c", CLIENT, mode, url, *args]
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


# --- one end-to-end request per pattern -------------------------------------------------------


@dataclass(frozen=True)
class Functional:
    mode: str
    """predict | job | sync_async | images | serial | requests | batch: how `judge` reads the
    answer; CLIENT runs the mode of the same name (serial: predict)."""
    service: str
    """The entry Service."""
    model_from: str | None = None
    """Process whose image holds the model card (golden examples) at its MLSP_MODEL_DIR;
    None: `payload`."""
    payload: str = IRIS_ROW
    """JSON for CLIENT when no model card is used: {"instances", "labels"}, or for `requests`
    a list of {"path", "json", "expect": {"status", "x_cache"?, "labels"?}}. Default: the iris
    row (any iris model says setosa)."""


FUNCTIONAL = {
    "web_single": Functional("predict", "web-single"),
    "model_in_image": Functional("predict", "model-in-image"),
    "model_load": Functional("predict", "model-load"),
    "synchronous": Functional("predict", "synchronous", "server"),
    "asynchronous": Functional("job", "asynchronous", "worker"),
    "sync_async": Functional("sync_async", "sync-async", "worker"),
    "batch_inference": Functional("batch", "batch-inference"),
    "prep_pred": Functional("images", "prep-pred", "pred"),
    "serial": Functional("serial", "serial", payload=SERIAL_ROWS),
    "parallel": Functional("predict", "parallel", payload=IRIS_CLASSES),
    "prediction_cache": Functional("requests", "prediction-cache", payload=CACHE_REQUESTS),
    "data_cache": Functional("requests", "data-cache", payload=ITEM_REQUESTS),
}
CLIENT_MODE = {"serial": "predict"}


def _labels(body: Any) -> list[str]:
    preds = body.get("predictions") if isinstance(body, dict) else None
    return [p.get("label") for p in preds] if isinstance(preds, list) else []


def judge(mode: str, out: dict[str, Any]) -> tuple[bool, str]:
    """Whether a CLIENT answer is right, and what to print."""
    expected = out.get("expected")
    if mode == "predict":
        got = _labels(out.get("body"))
        return out.get("status") == 200 and got == expected, f"labels {got}, expected {expected}"
    if mode == "job":
        final = out.get("final") or {}
        got = _labels(final.get("result"))
        ok = out.get("status") == 202 and final.get("status") == "done" and got == expected
        return ok, (
            f"202 {out.get('ticket', {}).get('job_id')}, then {final.get('status')} after "
            f"{final.get('attempts')} attempt(s), labels {got}, expected {expected}"
        )
    if mode == "sync_async":
        answer, final = out.get("answer") or {}, out.get("final") or {}
        fast = _labels(answer.get("fast"))
        got = _labels(final.get("result"))
        ok = (
            out.get("status") == 200
            and len(fast) == len(expected or [])
            and final.get("status") == "done"
            and got == expected
        )
        return ok, (
            f"fast {fast} in {out.get('fast_ms')} ms, final {final.get('status')} {got} "
            f"(expected {expected}), revised {(final.get('result') or {}).get('revised')}"
        )
    if mode == "images":  # prep_pred: each PNG answered; most keep their label
        answers = out.get("answers") or []
        got = [a.get("label") for a in answers]
        same = sum(g == e for g, e in zip(got, expected or [], strict=False))
        ok = (
            bool(answers)
            and len(answers) == len(expected or [])
            and all(a.get("status") == 200 and a.get("label") is not None for a in answers)
            and same >= 0.8 * len(answers)
        )
        statuses = sorted({a.get("status") for a in answers}, key=str)
        return ok, (
            f"{len(answers)} PNGs -> status {statuses}, labels {got}; {same} of "
            f"{len(answers)} as the golden tensors {expected} (spec: >= 95% over the data set)"
        )
    if mode == "serial":  # the outlier stops at the gate: stage 2 sees only the inlier rows
        body = out.get("body")
        body = body if isinstance(body, dict) else {}
        got = _labels(body)
        reached = {s.get("name"): s.get("rows") for s in body.get("stages") or []}
        inliers = sum(label != "unknown" for label in expected or [])
        ok = out.get("status") == 200 and got == expected and reached.get("classify") == inliers
        return ok, f"labels {got}, expected {expected}; rows per stage {reached}"
    if mode == "requests":
        answers = out.get("answers") or []
        lines, ok = [], bool(answers)
        for answer in answers:
            expect = answer.get("expect") or {}
            ok &= all(answer.get(k) == v for k, v in expect.items())
            seen = (answer.get("status"), answer.get("x_cache"), answer.get("labels"))
            sent = json.dumps(answer.get("sent"), separators=(",", ":"))
            lines.append(f"{sent} -> " + " ".join(str(v) for v in seen if v))
        return ok, "; ".join(lines)
    raise ValueError(mode)


def _model_card(player: Player, process: str) -> tuple[str, str]:
    """(image, card path) of the container running `process`."""
    for doc in player.docs:
        if doc["kind"] in POD_OWNERS:
            for _, c in containers(pod_spec(doc)[1]):
                env = {e["name"]: e.get("value") for e in c.get("env") or []}
                if c["name"] == process and env.get("MLSP_MODEL_DIR"):
                    return c["image"], f"{env['MLSP_MODEL_DIR']}/model.json"
    raise LookupError(f"no container {process} with MLSP_MODEL_DIR")


def functional(player: Player, check: Functional, result: Checks) -> None:
    svc = next(
        d for d in player.docs if d["kind"] == "Service" and d["metadata"]["name"] == check.service
    )
    url = _service_url(svc)
    if check.mode == "batch":
        _check_batch(player, url, result)
        return
    image, rows = (
        (None, check.payload) if check.model_from is None else _model_card(player, check.model_from)
    )
    mode = CLIENT_MODE.get(check.mode, check.mode)
    ok, raw = player.client(mode, url, rows, "60", image=image, timeout=90)
    what = {
        "predict": f"POST {check.service}/predict gives the model's labels",
        "job": f"POST {check.service}/jobs, polled to done with the model's labels",
        "sync_async": f"POST {check.service}/predict: fast answer, then the final one by polling",
        "images": f"POST {check.service}/predict/image with digit PNGs gives labels",
        "serial": f"POST {check.service}/predict: the outlier is unknown and stops at the gate",
        "requests": f"POST {check.service}: each answer has the expected status and X-Cache",
    }[check.mode]
    if not ok:
        result.add(what, False, raw)
        return
    try:
        out = json.loads(raw.splitlines()[-1])
        good, detail = judge(check.mode, out)
    except (ValueError, IndexError, AttributeError, TypeError) as exc:
        good, detail = False, f"unexpected answer ({exc!r})"
    result.add(what, good, detail if good else f"{detail}; {raw[-600:]}")
    if good and check.mode == "job":
        _check_redis_durable(player, url, out["ticket"]["status_url"], result)


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


REACH = r"""
import socket, sys, time
t = time.monotonic()
try:
    addrs = sorted({a[4][0] for a in socket.getaddrinfo(sys.argv[1], int(sys.argv[2]))})
except OSError as e:
    print(f"resolve {sys.argv[1]}: {e!r} after {time.monotonic() - t:.2f} s", end="; ")
    sys.exit()
print(f"resolve {sys.argv[1]} -> {addrs} in {time.monotonic() - t:.2f} s", end="; ")
for a in addrs:
    t = time.monotonic()
    try:
        socket.create_connection((a, int(sys.argv[2])), timeout=2).close()
        print(f"connect {a}: ok in {time.monotonic() - t:.2f} s", end="; ")
    except OSError as e:
        print(f"connect {a}: {e!r} after {time.monotonic() - t:.2f} s", end="; ")
"""


def _reach(player: Player, service: str, pod: str, port: int) -> str:
    """Why the clients cannot reach a restarted pod: what its Service name resolves to and
    whether that address accepts a connection, seen from a fresh container on the pods'
    network and from inside each client pod (with its ARP table), and the pod's address."""
    run = ["run", "--rm", "--network", player.net, "--entrypoint", "python", player.client_image]
    probe = ["-c", REACH, service, str(port)]
    seen = [f"fresh: {podman(*run, *probe, timeout=60).stdout.strip()}"]
    for c in json.loads(podman("ps", "--format", "json").stdout or "[]"):
        name = c["Names"][0]
        if name.startswith(pod) or name.endswith("-infra") or not re.search(r"-\d+-", name):
            continue
        out = podman("exec", name, "python", *probe, timeout=60)
        arp = podman("exec", name, "cat", "/proc/net/arp", timeout=30).stdout.split("\n")[1:]
        seen.append(f"{name}: {(out.stdout + out.stderr).strip()[-300:]} arp {arp}")
    infra = podman("pod", "inspect", pod, "--format", "{{.InfraContainerID}}").stdout.strip()
    ip = podman(
        "inspect", infra, "--format", "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"
    )
    return " | ".join(seen) + f" | pod {pod} address {ip.stdout.strip()!r}"


def _pod_state(pod: str) -> str:
    return podman("pod", "inspect", pod, "--format", "{{.State}}").stdout.strip()


def _check_batch(player: Player, url: str, result: Checks) -> None:
    """After the seed and one scoring run: every item has a prediction or an error."""
    seed = next(
        c
        for d in player.docs
        if d["kind"] == "Job"
        for _, c in containers(pod_spec(d)[1])
        if c["name"] == "seed"
    )
    rows = int(next(e["value"] for e in seed["env"] if e["name"] == "MLSP_SEED_ROWS"))
    for attempt in range(3):  # a 503 says when to come back (Retry-After): a client does
        ok, raw = player.client("get", url, "/summary")
        if not ok:
            result.add(
                "GET /summary",
                False,
                f"{raw[-600:]} | {_reach(player, 'postgres', 'postgres-0', 5432)}",
            )
            return
        answer = json.loads(raw)
        if answer.get("status") != 503 or attempt == 2:
            break
        time.sleep(5)
    body = answer.get("body") or {}
    versions = body.get("model_versions") or {}
    complete = bool(versions) and all(
        v.get("unscored") == 0 and v.get("scored", 0) + v.get("errors", 0) == rows
        for v in versions.values()
    )
    result.add(
        f"GET /summary: {rows} items seeded, each scored once (or failed) per model version",
        answer.get("status") == 200 and body.get("items") == rows and complete,
        f"{answer.get('ms')} ms: {json.dumps(body)[:400]}",
    )


def _check_client_job(logs: list[str], result: Checks) -> None:
    """synchronous: the line routed every item, and shipped some (the server answered)."""
    for log in logs:
        summary = next(
            (json.loads(ln) for ln in reversed(log.splitlines()) if '"event": "summary"' in ln),
            None,
        )
        ok = (
            summary is not None
            and summary["ship"] + summary["recheck"] == summary["items"] > 0
            and summary["ship"] > 0
        )
        result.add(
            "client routed every item (ship or recheck) and shipped some",
            ok,
            json.dumps(summary) if summary else log[-300:],
        )


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
                    logs = _run_job(player, doc, result)
                    if overlay == "synchronous" and "client" in declared(doc, pattern):
                        _check_client_job(logs, result)
            if overlay in FUNCTIONAL and healthy:
                functional(player, FUNCTIONAL[overlay], result)
        finally:
            player.teardown()
    return result
