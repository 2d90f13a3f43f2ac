"""Run a rendered overlay with `podman kube play` and check it, with no cluster.

podman 4.3 (Debian bookworm) runs Deployments, ConfigMaps, PVCs, emptyDirs, securityContext
and limits, but needs a little preparation (see docs/kubernetes.md):

- init containers loop forever under restartPolicy Always: pods with init containers get
  `OnFailure` (the init container still runs to completion first);
- every containerPort is published on the host (a second replica clashes): ports are dropped,
  pods are reached on a podman network under their Service names (`--network N:alias=svc`,
  hence Service port == containerPort);
- Jobs are ignored: their pod templates run as bare Pods and their exit code is checked;
- probes cannot run faithfully (podman makes the liveness probe a `curl` healthcheck on a
  dropped port and restarts the container when it fails): probes are dropped and readiness is
  checked over HTTP from a client container on the network.

Order: Deployments without init containers (the registry, model_in_image), then Jobs (train
and register), then Deployments with init containers (model_load's loader).
"""

from __future__ import annotations

import copy
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from kube.images import image_key
from kube.manifests import POD_OWNERS, Doc, matches, pod_spec
from kube.report import Checks, podman

CLIENT_CHECK = r"""
import json, sys, time, urllib.request
url, path, deadline = sys.argv[1], sys.argv[2], time.time() + float(sys.argv[3])
while True:
    try:
        with urllib.request.urlopen(url + path, timeout=2) as r:
            if r.status == 200:
                break
    except Exception as e:
        err = e
    if time.time() > deadline:
        sys.exit(f"{url}{path} not ready: {err}")
    time.sleep(0.5)
if len(sys.argv) > 4:
    req = urllib.request.Request(url + "/predict", data=sys.argv[4].encode(),
                                 headers={"content-type": "application/json"})
    body = json.load(urllib.request.urlopen(req, timeout=5))
    print(json.dumps(body))
else:
    print("ready")
"""


def fix_pod(pod: dict[str, Any]) -> dict[str, Any]:
    pod = copy.deepcopy(pod)
    if pod.get("initContainers") and pod.get("restartPolicy", "Always") == "Always":
        pod["restartPolicy"] = "OnFailure"
    for c in pod.get("containers", []) + pod.get("initContainers", []):
        c.pop("ports", None)
        # podman turns a liveness probe into a `curl` healthcheck (no curl in our images;
        # named ports become port 0 once ports are dropped) and restarts the container when
        # it fails: drop probes, readiness is checked over HTTP instead
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            c.pop(probe, None)
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


class Player:
    def __init__(self, overlay: str, docs: list[Doc], workdir: Path) -> None:
        self.overlay = overlay
        self.docs = docs
        self.workdir = workdir
        self.net = f"mlsp-play-{overlay.replace('_', '-')}"
        self.files: list[Path] = []
        self.volumes: set[str] = set()
        self.client_image = next(
            c["image"]
            for d in docs
            if d["kind"] == "Deployment"
            for c in pod_spec(d)[1]["containers"]
            if "mlsp-serving" in c["image"] or "mlsp-model-in-image" in c["image"]
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

    def play_deployment(self, dep: Doc) -> tuple[bool, str]:
        """Run each replica as its own Pod with its own emptyDirs."""
        template = dep["spec"]["template"]
        claims = {
            (v.get("persistentVolumeClaim") or {}).get("claimName")
            for v in template["spec"].get("volumes") or []
        }
        pvcs = [
            d
            for d in self.docs
            if d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] in claims
        ]
        pods = []
        for i in range(dep["spec"].get("replicas", 1)):
            name = f"{dep['metadata']['name']}-{i}"
            spec = fix_pod(template["spec"])
            self.private_volumes(spec, name)
            meta = {"name": name, "labels": (template.get("metadata") or {}).get("labels")}
            pods.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
        path = self._write(dep["metadata"]["name"], [*self.configmaps(), *pvcs, *pods])
        aliases = ",".join(f"alias={s['metadata']['name']}" for s in services_for(dep, self.docs))
        network = f"{self.net}:{aliases}" if aliases else self.net
        result = podman("kube", "play", "--network", network, str(path))
        return result.returncode == 0, (result.stderr or result.stdout)[-1500:]

    def play_job(self, job: Doc) -> tuple[int, str]:
        template = job["spec"]["template"]
        spec = fix_pod(template["spec"])
        spec["restartPolicy"] = "Never"
        name = f"job-{job['metadata']['name']}"
        self.private_volumes(spec, name)
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": (template.get("metadata") or {}).get("labels")},
            "spec": spec,
        }
        path = self._write(name, [*self.configmaps(), pod])
        result = podman("kube", "play", "--network", self.net, str(path))
        if result.returncode != 0:
            return -1, result.stderr[-1500:]
        container = f"{name}-{spec['containers'][0]['name']}"
        deadline = str(job["spec"].get("activeDeadlineSeconds", 600))
        code = podman("wait", container, timeout=float(deadline) + 30).stdout.strip()
        logs = podman("logs", container).stdout[-1500:]
        return int(code or -1), logs

    def client(
        self, url: str, path: str, timeout: float, body: str | None = None
    ) -> tuple[bool, str]:
        args = ["run", "--rm", "--network", self.net, "--entrypoint", "python", self.client_image]
        args += ["-c", CLIENT_CHECK, url, path, str(timeout)] + ([body] if body else [])
        result = podman(*args, timeout=timeout + 60)
        return result.returncode == 0, (result.stdout.strip() or result.stderr.strip())[-1500:]

    def pod_containers(self, deployment: str) -> list[dict[str, Any]]:
        out = podman("ps", "-a", "--format", "json").stdout
        return [
            c
            for c in json.loads(out or "[]")
            if not c.get("IsInfra") and re.match(rf"^{re.escape(deployment)}-\d+-", c["Names"][0])
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


def play(overlay: str, docs: list[Doc], *, timeout: float = 180) -> Checks:
    """Run the overlay and check that pods become ready and answer and that Jobs exit 0."""
    result = Checks(indent="  ")
    with tempfile.TemporaryDirectory(prefix="mlsp-play-") as tmp:
        player = Player(overlay, docs, Path(tmp))
        podman("network", "rm", "-f", player.net)  # left by an interrupted run
        podman("network", "create", player.net, check=True)
        try:
            deployments = [d for d in docs if d["kind"] == "Deployment"]
            plain = [d for d in deployments if not pod_spec(d)[1].get("initContainers")]
            with_init = [d for d in deployments if pod_spec(d)[1].get("initContainers")]
            jobs = [d for d in docs if d["kind"] == "Job"]
            for dep in plain:
                _run_deployment(player, dep, result, timeout)
            for job in jobs:
                code, logs = player.play_job(job)
                result.add(
                    f"Job {job['metadata']['name']} exits 0", code == 0, "" if code == 0 else logs
                )
            for dep in with_init:
                _run_deployment(player, dep, result, timeout)
        finally:
            player.teardown()
    return result


def _readiness_path(dep: Doc) -> str:
    """The path the manifest's readiness probe calls (probes are dropped for kube play)."""
    probe = pod_spec(dep)[1]["containers"][0].get("readinessProbe") or {}
    return str((probe.get("httpGet") or {}).get("path", "/readyz"))


def _run_deployment(player: Player, dep: Doc, result: Checks, timeout: float) -> None:
    name = dep["metadata"]["name"]
    ok, detail = player.play_deployment(dep)
    result.add(f"kube play Deployment {name}", ok, "" if ok else detail)
    if not ok:
        return
    replicas = dep["spec"].get("replicas", 1)
    for svc in services_for(dep, player.docs):
        path = _readiness_path(dep)
        ready, detail = player.client(_service_url(svc), path, timeout)
        result.add(f"Service {svc['metadata']['name']} {path} 200", ready, "" if ready else detail)
        if ready and path == "/readyz":
            ok, body = player.client(
                _service_url(svc), "/readyz", 10, json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]})
            )
            good = ok and json.loads(body)["predictions"][0]["label"] == "setosa"
            result.add(f"Service {svc['metadata']['name']} predicts setosa", good, body[-300:])
    pods = {
        m.group(1)
        for c in player.pod_containers(name)
        if (m := re.match(rf"^({re.escape(name)}-\d+)-", c["Names"][0]))
    }
    result.add(
        f"Deployment {name} runs {replicas} pod(s)", len(pods) == replicas, str(sorted(pods))
    )
    for c in player.pod_containers(name):
        if c.get("State") != "running":
            continue
        uid = podman("exec", c["Names"][0], "id", "-u").stdout.strip()
        result.add(f"{c['Names'][0]} runs as uid 10001", uid == "10001", uid)
