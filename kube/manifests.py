"""Render the kustomize overlays and check them with no cluster.

1. Schema: every object against the Kubernetes 1.32 OpenAPI schemas, strict (unknown fields
   fail), with `kubernetes-validate`; an apiVersion with no schema (removed or misspelled) is
   an error, not the CLI's warning.
2. Semantics a schema cannot express: DNS-1123 names, selectors that match their pod
   templates, Services/PDBs/HPAs/NetworkPolicies that point at something, ConfigMap and PVC
   references, named ports, Service port == containerPort, unique selectors.
3. The project's security baseline (PATTERNS.md, cross-cutting) on every pod and container.
4. The overlay runs the same processes as the pattern's local-runner declaration.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from patterns.declare import Pattern, Process

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = ROOT / "manifests"
K8S_VERSION = "1.32.0"
NAMESPACE = "ml-patterns"
UID = 10001

Doc = dict[str, Any]

ALLOWED_API = {
    "v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v2",
    "policy/v1",
    "networking.k8s.io/v1",
}
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod"}
LONG_RUNNING = {"Deployment", "StatefulSet", "DaemonSet"}
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def overlays() -> list[str]:
    return sorted(p.parent.name for p in (MANIFESTS / "patterns").glob("*/kustomization.yaml"))


def kubectl() -> str:
    found = shutil.which("kubectl") or shutil.which("kustomize")
    if not found:
        raise RuntimeError("kubectl (or kustomize) is needed to render manifests")
    return found


def render(overlay: str | Path) -> str:
    path = overlay if isinstance(overlay, Path) else MANIFESTS / "patterns" / overlay
    tool = kubectl()
    cmd = [tool, "kustomize", str(path)] if tool.endswith("kubectl") else [tool, "build", str(path)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def load(text: str) -> list[Doc]:
    return [d for d in yaml.safe_load_all(text) if d]


def name_of(doc: Doc) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def pod_spec(doc: Doc) -> tuple[dict[str, Any], dict[str, Any]]:
    """(template labels, pod spec) of anything that runs pods."""
    spec = doc.get("spec") or {}
    if doc["kind"] == "Pod":
        return (doc.get("metadata") or {}).get("labels") or {}, spec
    if doc["kind"] == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    template = spec.get("template") or {}
    return (template.get("metadata") or {}).get("labels") or {}, template.get("spec") or {}


def containers(pod: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for c in pod.get("initContainers") or []:
        yield "init", c
    for c in pod.get("containers") or []:
        yield "main", c


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


# --- 1. schema ----------------------------------------------------------------------------


def schema_errors(docs: Iterable[Doc], version: str = K8S_VERSION) -> list[str]:
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except SchemaNotFoundError:
            errors.append(
                f"{name_of(doc)}: no {doc.get('apiVersion')} {doc.get('kind')} in Kubernetes "
                f"{version} (removed or misspelled apiVersion)"
            )
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{name_of(doc)}: schema: {where}: {exc.message}")
    return errors


# --- 2. semantics -------------------------------------------------------------------------


DEPENDENT_ENV = re.compile(r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)")
CRON_FIELD = re.compile(r"^[0-9*/,\-A-Za-z?]+$")


def statefulset_errors(doc: Doc, services: dict[str, Doc]) -> list[str]:
    """A StatefulSet here exists for its state (Redis, PostgreSQL): it has volumeClaimTemplates
    its pod mounts, and a headless governing Service that selects its pods."""
    errors = []
    spec = doc.get("spec") or {}
    claims = [(t.get("metadata") or {}).get("name") for t in spec.get("volumeClaimTemplates") or []]
    if not claims:
        errors.append(f"{name_of(doc)}: a StatefulSet needs volumeClaimTemplates (its state)")
    mounted = {
        m.get("name") for _, c in containers(pod_spec(doc)[1]) for m in c.get("volumeMounts") or []
    }
    for claim in claims:
        if claim not in mounted:
            errors.append(f"{name_of(doc)}: volumeClaimTemplate {claim!r} is mounted nowhere")
    svc = services.get(spec.get("serviceName", ""))
    if svc is None:
        errors.append(
            f"{name_of(doc)}: serviceName {spec.get('serviceName')!r} is no rendered Service"
        )
    else:
        if (svc.get("spec") or {}).get("clusterIP") != "None":
            errors.append(f"{name_of(doc)}: governing Service {name_of(svc)} must be headless")
        if not matches((svc.get("spec") or {}).get("selector") or {}, pod_spec(doc)[0]):
            errors.append(f"{name_of(doc)}: governing Service {name_of(svc)} selects other pods")
    return errors


def cronjob_errors(doc: Doc) -> list[str]:
    """Scheduled batch work never overlaps (a slow run must not pile up behind the next one)
    and has a cron schedule of five fields."""
    errors = []
    spec = doc.get("spec") or {}
    if spec.get("concurrencyPolicy") != "Forbid":
        errors.append(
            f"{name_of(doc)}: concurrencyPolicy must be Forbid, not "
            f"{spec.get('concurrencyPolicy', 'Allow (the default)')}"
        )
    schedule = str(spec.get("schedule", ""))
    fields = schedule.split()
    if not schedule.startswith("@") and (
        len(fields) != 5 or not all(CRON_FIELD.match(f) for f in fields)
    ):
        errors.append(f"{name_of(doc)}: schedule {schedule!r} is not a 5-field cron expression")
    return errors


def semantic_errors(docs: list[Doc]) -> list[str]:
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()
    configmaps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    secrets = {
        d["metadata"]["name"]: set(d.get("data") or {}) | set(d.get("stringData") or {})
        for d in docs
        if d["kind"] == "Secret"
    }
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    pvcs = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    workloads = [d for d in docs if d["kind"] in POD_OWNERS]
    by_kind = {(d["kind"], d["metadata"]["name"]) for d in docs}
    selectors: dict[tuple[tuple[str, str], ...], str] = {}

    for doc in docs:
        meta = doc.get("metadata") or {}
        name = meta.get("name", "")
        key = (doc["kind"], name)
        if key in seen:
            errors.append(f"{name_of(doc)}: duplicate")
        seen.add(key)
        if doc.get("apiVersion") not in ALLOWED_API:
            errors.append(f"{name_of(doc)}: apiVersion {doc.get('apiVersion')} is not allowed")
        pattern, limit = (DNS1035, 63) if doc["kind"] == "Service" else (DNS1123, 253)
        if not pattern.match(name) or len(name) > limit:
            errors.append(f"{name_of(doc)}: invalid name {name!r}")
        if doc["kind"] != "Namespace" and meta.get("namespace") != NAMESPACE:
            errors.append(f"{name_of(doc)}: namespace {meta.get('namespace')!r}, not {NAMESPACE}")

    for doc in workloads:
        labels, pod = pod_spec(doc)
        if doc["kind"] in LONG_RUNNING:
            sel = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
            if not matches(sel, labels):
                errors.append(f"{name_of(doc)}: selector {sel} does not match labels {labels}")
            frozen = tuple(sorted(sel.items()))
            if frozen in selectors:
                errors.append(f"{name_of(doc)}: selector {sel} also used by {selectors[frozen]}")
            selectors[frozen] = name_of(doc)
        if doc["kind"] in {"Job", "CronJob"} and pod.get("restartPolicy") not in (
            "Never",
            "OnFailure",
        ):
            errors.append(f"{name_of(doc)}: a Job's restartPolicy must be Never or OnFailure")
        if doc["kind"] == "StatefulSet":
            errors += statefulset_errors(doc, services)
        if doc["kind"] == "CronJob":
            errors += cronjob_errors(doc)
        names = [c.get("name") for _, c in containers(pod)]
        if len(names) != len(set(names)):
            errors.append(f"{name_of(doc)}: duplicate container names {names}")
        volumes = {v.get("name"): v for v in pod.get("volumes") or []}
        for claim in (doc.get("spec") or {}).get("volumeClaimTemplates") or []:
            volumes[(claim.get("metadata") or {}).get("name")] = {"claimTemplate": claim}
        for _, c in containers(pod):
            ports = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    errors.append(f"{name_of(doc)}: {c['name']}.{probe} port {port!r} unknown")
            defined: set[str] = set()
            for env in c.get("env") or []:
                ref = (env.get("valueFrom") or {}).get("configMapKeyRef")
                if ref and not ref.get("optional") and ref.get("name") not in configmaps:
                    errors.append(f"{name_of(doc)}: ConfigMap {ref.get('name')!r} not rendered")
                sref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if sref and not sref.get("optional"):
                    if sref.get("name") not in secrets:
                        errors.append(f"{name_of(doc)}: Secret {sref.get('name')!r} not rendered")
                    elif sref.get("key") not in secrets[sref["name"]]:
                        key = sref.get("key")
                        errors.append(f"{name_of(doc)}: Secret {sref['name']!r} has no key {key!r}")
                # $(NAME) expands only names defined earlier in the list; else it stays literal
                for used in DEPENDENT_ENV.findall(str(env.get("value", ""))):
                    if used not in defined:
                        errors.append(
                            f"{name_of(doc)}: {c['name']} env {env.get('name')} uses $({used}) "
                            "before it is defined (Kubernetes would leave it unexpanded)"
                        )
                defined.add(env.get("name", ""))
            for mount in c.get("volumeMounts") or []:
                if mount.get("name") not in volumes:
                    errors.append(f"{name_of(doc)}: {c['name']} mounts unknown volume {mount}")
        for vol in volumes.values():
            cm = (vol.get("configMap") or {}).get("name")
            if cm and cm not in configmaps:
                errors.append(f"{name_of(doc)}: ConfigMap volume {cm!r} not rendered")
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim and claim not in pvcs:
                errors.append(f"{name_of(doc)}: PVC {claim!r} not rendered")
            secret = (vol.get("secret") or {}).get("secretName")
            if secret and secret not in secrets:
                errors.append(f"{name_of(doc)}: Secret volume {secret!r} not rendered")

    for doc in docs:
        spec = doc.get("spec") or {}
        if doc["kind"] == "Service":
            hits = [w for w in workloads if matches(spec.get("selector") or {}, pod_spec(w)[0])]
            if not hits:
                errors.append(f"{name_of(doc)}: selector {spec.get('selector')} matches no pods")
            for port in spec.get("ports") or []:
                target = port.get("targetPort", port.get("port"))
                cports = [
                    cp
                    for w in hits
                    for c in pod_spec(w)[1].get("containers") or []
                    for cp in c.get("ports") or []
                ]
                match = [cp for cp in cports if target in (cp.get("name"), cp.get("containerPort"))]
                if not match:
                    errors.append(f"{name_of(doc)}: targetPort {target!r} is no container port")
                elif any(cp["containerPort"] != port.get("port") for cp in match):
                    errors.append(
                        f"{name_of(doc)}: port {port.get('port')} != containerPort "
                        f"{match[0]['containerPort']} (kube play and this project need them equal)"
                    )
        if doc["kind"] == "PodDisruptionBudget":
            sel = (spec.get("selector") or {}).get("matchLabels") or {}
            if not any(matches(sel, pod_spec(w)[0]) for w in workloads):
                errors.append(f"{name_of(doc)}: selector {sel} matches no pods")
        if doc["kind"] == "NetworkPolicy":
            sel = (spec.get("podSelector") or {}).get("matchLabels") or {}
            if sel and not any(matches(sel, pod_spec(w)[0]) for w in workloads):
                errors.append(f"{name_of(doc)}: podSelector {sel} matches no pods")
        if doc["kind"] == "HorizontalPodAutoscaler":
            ref = spec.get("scaleTargetRef") or {}
            if (ref.get("kind"), ref.get("name")) not in by_kind:
                errors.append(f"{name_of(doc)}: scaleTargetRef {ref} not rendered")
    for doc in docs:
        if doc["kind"] in LONG_RUNNING and ((doc.get("spec") or {}).get("replicas") or 1) > 1:
            labels = pod_spec(doc)[0]
            pdbs = [
                d
                for d in docs
                if d["kind"] == "PodDisruptionBudget"
                and matches(
                    ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}, labels
                )
            ]
            if not pdbs:
                errors.append(f"{name_of(doc)}: several replicas and no PodDisruptionBudget")
    return errors


# --- 3. security baseline -------------------------------------------------------------------


def baseline_errors(docs: list[Doc]) -> list[str]:
    errors: list[str] = []
    for doc in docs:
        if doc["kind"] not in POD_OWNERS:
            continue
        _, pod = pod_spec(doc)
        where = name_of(doc)
        psc = pod.get("securityContext") or {}
        if psc.get("runAsNonRoot") is not True or psc.get("runAsUser") != UID:
            errors.append(f"{where}: pod must set runAsNonRoot: true and runAsUser: {UID}")
        if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errors.append(f"{where}: pod seccompProfile must be RuntimeDefault")
        if pod.get("automountServiceAccountToken") is not False:
            errors.append(f"{where}: automountServiceAccountToken must be false")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            errors.append(f"{where}: host namespaces are not allowed")
        for vol in pod.get("volumes") or []:
            if "hostPath" in vol:
                errors.append(f"{where}: hostPath volume {vol.get('name')}")
        persistent = (doc.get("spec") or {}).get("volumeClaimTemplates") or [
            v for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v
        ]
        if persistent and psc.get("fsGroup") != UID:
            errors.append(f"{where}: a pod with a PVC needs fsGroup: {UID} (to write to it)")
        if doc["kind"] in {"Job", "CronJob"}:
            spec = doc.get("spec") or {}
            if doc["kind"] == "CronJob":
                spec = (spec.get("jobTemplate") or {}).get("spec") or {}
            if not spec.get("activeDeadlineSeconds"):
                errors.append(f"{where}: a Job needs activeDeadlineSeconds (its liveness bound)")
        for role, c in containers(pod):
            cw = f"{where}: container {c.get('name')}"
            sc = c.get("securityContext") or {}
            if sc.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cw}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cw}: readOnlyRootFilesystem must be true")
            if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
                errors.append(f"{cw}: capabilities must drop ALL")
            if sc.get("privileged") or sc.get("runAsUser") not in (None, UID):
                errors.append(f"{cw}: privileged or another uid")
            res = c.get("resources") or {}
            for kind in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(res.get(kind) or {}):
                    errors.append(f"{cw}: needs {kind} for cpu and memory")
            image = str(c.get("image", ""))
            tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
            if not tag or tag == "latest":
                errors.append(f"{cw}: image {image!r} needs a pinned tag")
            if role == "main" and doc["kind"] in LONG_RUNNING:
                for probe in ("readinessProbe", "livenessProbe"):
                    if probe not in c:
                        errors.append(f"{cw}: needs a {probe}")
            if role == "init":
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    if probe in c:
                        errors.append(f"{cw}: Kubernetes rejects {probe} on init containers")
            for env in c.get("env") or []:
                if re.search(r"PASSWORD|SECRET|TOKEN", env.get("name", "")) and "value" in env:
                    errors.append(f"{cw}: {env['name']} must come from a Secret")
    return errors


# --- 4. same processes as the local runner ---------------------------------------------------


def _kinds_for(proc: Process) -> tuple[set[str], str]:
    """(workload kinds, container role) where a declared process must run."""
    if proc.kube_kind:
        return {proc.kube_kind}, "main"
    if proc.init:
        return POD_OWNERS, "init"
    return LONG_RUNNING, "main"


def secret_only_env(container: dict[str, Any]) -> set[str]:
    """Env names a manifest may add to a declaration: values from a Secret that another
    variable of the container uses as $(NAME) (e.g. a database password in a URL). Locally the
    whole value is one variable; on Kubernetes the secret part must come from a Secret."""
    env = container.get("env") or []
    used = {m for e in env for m in DEPENDENT_ENV.findall(str(e.get("value", "")))}
    return {
        e["name"]
        for e in env
        if (e.get("valueFrom") or {}).get("secretKeyRef") and e["name"] in used
    }


def declaration_errors(pattern: Pattern, docs: list[Doc]) -> list[str]:
    """Each declared process is a container of a workload of the declared kind (an
    initContainer when `init` and no `kube_kind`, a Deployment/StatefulSet container by
    default, a Job or CronJob container when `kube_kind` says so), and every container of that
    name runs the same command with the same environment variable names (plus Secret parts of
    composed values, see secret_only_env)."""
    found: dict[str, list[tuple[str, str, dict[str, Any]]]] = {}
    for doc in docs:
        if doc["kind"] not in POD_OWNERS:
            continue
        labels, pod = pod_spec(doc)
        if labels.get("app.kubernetes.io/part-of") != "ml-system-patterns":
            continue
        for role, c in containers(pod):
            found.setdefault(c["name"], []).append((name_of(doc), role, c))
    errors = []
    for proc in pattern.processes:
        where = f"{pattern.id}: {proc.name}"
        if proc.name not in found:
            errors.append(f"{pattern.id}: process {proc.name!r} has no container in the overlay")
            continue
        kinds, role = _kinds_for(proc)
        placed = [(w, r) for w, r, _ in found[proc.name] if w.split("/")[0] in kinds and r == role]
        if not placed:
            seen = ", ".join(f"{r} container of {w}" for w, r, _ in found[proc.name])
            want = "an initContainer" if role == "init" else "a main container"
            errors.append(
                f"{where} is a {seen}; declared init={proc.init}, kube_kind={proc.kube_kind}: "
                f"it must be {want} of a {'/'.join(sorted(kinds))}"
            )
        for workload, _, c in found[proc.name]:
            if c.get("command") != proc.command:
                errors.append(f"{where} ({workload}) runs {c.get('command')}, not {proc.command}")
            names = {e["name"] for e in c.get("env") or []}
            extra = names - set(proc.env) - secret_only_env(c)
            if extra or set(proc.env) - names:
                errors.append(
                    f"{where} ({workload}) env names differ: manifest-only {sorted(extra)}, "
                    f"runner-only {sorted(set(proc.env) - names)}"
                )
            if proc.port is not None and not proc.init and not proc.kube_kind:
                cports = [p.get("containerPort") for p in c.get("ports") or []]
                if proc.port not in cports:
                    errors.append(f"{where} ({workload}) has no containerPort {proc.port}")
    return errors


def check_overlay(overlay: str, version: str = K8S_VERSION) -> tuple[list[Doc], list[str]]:
    """Render and run every check; returns (documents, errors)."""
    from patterns.runner import load as load_pattern

    docs = load(render(overlay))
    errors = schema_errors(docs, version) + semantic_errors(docs) + baseline_errors(docs)
    errors += declaration_errors(load_pattern(overlay), docs)
    return docs, errors
