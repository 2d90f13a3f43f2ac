"""Render the kustomize overlays and check them with no cluster.

1. Schema: every object against the Kubernetes 1.32 OpenAPI schemas, strict (unknown fields
   fail), with `kubernetes-validate`; an apiVersion with no schema (removed or misspelled) is
   an error, not the CLI's warning.
2. Semantics a schema cannot express: DNS-1123 names, selectors that match their pod
   templates, Services/PDBs/HPAs/NetworkPolicies that point at something, ConfigMap and PVC
   references, named ports, Service port == containerPort, unique selectors.
3. The project's security baseline (docs/catalogue.md, shared conventions) on every pod and
   container.
4. The overlay runs the same processes as the pattern's local-runner declaration.
5. NetworkPolicy: each Service admits exactly the callers the pattern declares (kube/netpol.py).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
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

DEPLOY_TIME_SECRETS: dict[str, tuple[str, ...]] = {
    "postgres-credentials": ("POSTGRES_PASSWORD",),
    "edge-manifest-key": ("MLSP_MANIFEST_KEY",),
}
"""Secrets no file of the repository holds (name -> keys): `make deploy` creates each missing
one in the namespace with random values (kube/deploy.py ensure_secrets) and never replaces
an existing one (PostgreSQL keeps the password its volume was initialised with); kube play
makes throwaway values. An overlay must not render a Secret: its values would be in git."""

GENERATED = "ml-system-patterns/generated"
"""Label of every ConfigMap (set by the kustomizations' generatorOptions): each one comes from
a configMapGenerator, so its name carries a hash of its content, a change makes a new one
and rolls the pods that read it, and `make deploy` prunes the ones nothing reads any more.
The one exception is a file a service reloads while it runs (parameter_based's parameters,
serving/hotconfig.py): its generator keeps the name (`disableNameSuffixHash`), so an edit
updates the mounted file in place instead of rolling the pods."""


def generated_secret_values() -> dict[tuple[str, str], str]:
    """Fresh random values for every deploy-time Secret key: URL-safe (letters, digits, - _),
    so clients can put them into a database URL as they are."""
    return {
        (name, key): secrets.token_urlsafe(24)
        for name, keys in DEPLOY_TIME_SECRETS.items()
        for key in keys
    }


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


def _kustomize(path: Path) -> str:
    tool = kubectl()
    cmd = [tool, "kustomize", str(path)] if tool.endswith("kubectl") else [tool, "build", str(path)]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout


def image_overrides(refs: Iterable[str]) -> list[dict[str, str]]:
    """kustomize `images:` entries that point every container of a repository at `ref`: its
    tag (newTag), or its digest when the reference is repo@sha256:..."""
    out = []
    for ref in sorted(set(refs)):
        if "@" in ref:
            name, digest = ref.split("@", 1)
            out.append({"name": name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name,
                        "digest": digest})  # fmt: skip
        else:
            name, _, tag = ref.rpartition(":")
            out.append({"name": name, "newTag": tag})
    return out


def _render_scratch(include: str, path: Path, **fields: Any) -> str:
    """`kubectl kustomize` of a kustomization made for the occasion (in build/render/,
    git-ignored) that includes `path` as one of its `include` (resources or components),
    with `fields` added."""
    scratch = ROOT / "build" / "render"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix=f"{path.name}-") as tmp:
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            include: [os.path.relpath(path, tmp)],
            **fields,
        }
        (Path(tmp) / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
        return _kustomize(Path(tmp))


def render(overlay: str | Path, images: Mapping[str, str] | None = None) -> str:
    """`kubectl kustomize` of an overlay; with `images` ({key: built reference}), of a
    kustomization made for the occasion that has the overlay as its resource and sets every
    image with kustomize's `images:` (newTag or digest): the way `kustomize edit set image`
    would, without editing the overlay."""
    path = overlay if isinstance(overlay, Path) else MANIFESTS / "patterns" / overlay
    if not images:
        return _kustomize(path)
    return _render_scratch("resources", path, images=image_overrides(images.values()))


def render_component(name: str) -> str:
    """`kubectl kustomize` of an optional component of manifests/components/ on its own, in
    the project's namespace (the PrometheusRule, the Grafana dashboard, the Istio rule)."""
    return _render_scratch("components", MANIFESTS / "components" / name, namespace=NAMESPACE)


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


@dataclass(frozen=True)
class Rendered:
    """What the reference checks look things up in: the rendered objects by kind and name."""

    configmaps: set[str]
    secrets: dict[str, set[str]]
    """Secret name -> its keys"""
    services: dict[str, Doc]
    pvcs: set[str]
    workloads: list[Doc]
    objects: set[tuple[str, str]]
    """(kind, name) of every object"""

    @classmethod
    def of(cls, docs: list[Doc]) -> Rendered:
        def named(kind: str) -> list[Doc]:
            return [d for d in docs if d["kind"] == kind]

        return cls(
            configmaps={d["metadata"]["name"] for d in named("ConfigMap")},
            secrets={
                **{name: set(keys) for name, keys in DEPLOY_TIME_SECRETS.items()},
                **{
                    d["metadata"]["name"]: set(d.get("data") or {}) | set(d.get("stringData") or {})
                    for d in named("Secret")
                },
            },
            services={d["metadata"]["name"]: d for d in named("Service")},
            pvcs={d["metadata"]["name"] for d in named("PersistentVolumeClaim")},
            workloads=[d for d in docs if d["kind"] in POD_OWNERS],
            objects={(d["kind"], d["metadata"]["name"]) for d in docs},
        )

    def pods_matching(self, selector: dict[str, str]) -> list[Doc]:
        return [w for w in self.workloads if matches(selector, pod_spec(w)[0])]


def identity_errors(docs: list[Doc]) -> list[str]:
    """Unique (kind, name), an allowed apiVersion, a valid name, the project's namespace."""
    errors = []
    seen: set[tuple[str, str]] = set()
    for doc in docs:
        meta = doc.get("metadata") or {}
        name = meta.get("name", "")
        key = (doc["kind"], name)
        if key in seen:
            errors.append(f"{name_of(doc)}: duplicate")
        seen.add(key)
        if doc.get("apiVersion") not in ALLOWED_API:
            errors.append(f"{name_of(doc)}: apiVersion {doc.get('apiVersion')} is not allowed")
        # a Service's name is a DNS label that must start with a letter (RFC 1035)
        pattern, limit = (DNS1035, 63) if doc["kind"] == "Service" else (DNS1123, 253)
        if not pattern.match(name) or len(name) > limit:
            errors.append(f"{name_of(doc)}: invalid name {name!r}")
        if doc["kind"] != "Namespace" and meta.get("namespace") != NAMESPACE:
            errors.append(f"{name_of(doc)}: namespace {meta.get('namespace')!r}, not {NAMESPACE}")
        if doc["kind"] == "ConfigMap" and GENERATED not in (meta.get("labels") or {}):
            errors.append(
                f"{name_of(doc)}: not from a configMapGenerator with the {GENERATED} label"
                " (a change would not roll its pods, and deploy could not prune it)"
            )
        if doc["kind"] == "Secret":
            errors.append(
                f"{name_of(doc)}: a Secret rendered from the repository has its values in git;"
                " make it a deploy-time Secret (kube/manifests.py DEPLOY_TIME_SECRETS)"
            )
    return errors


def selector_errors(
    doc: Doc, labels: dict[str, str], selectors: dict[tuple[tuple[str, str], ...], str]
) -> list[str]:
    """A long-running workload's selector matches its own pods and no other workload's
    selector is the same (`selectors`: the ones seen so far, updated)."""
    errors = []
    sel = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not matches(sel, labels):
        errors.append(f"{name_of(doc)}: selector {sel} does not match labels {labels}")
    frozen = tuple(sorted(sel.items()))
    if frozen in selectors:
        errors.append(f"{name_of(doc)}: selector {sel} also used by {selectors[frozen]}")
    selectors[frozen] = name_of(doc)
    return errors


def probe_port_errors(doc: Doc, c: dict[str, Any]) -> list[str]:
    """A probe's named port is one of the container's ports."""
    ports = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
    errors = []
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        port = ((c.get(probe) or {}).get("httpGet") or {}).get("port")
        if isinstance(port, str) and port not in ports:
            errors.append(f"{name_of(doc)}: {c['name']}.{probe} port {port!r} unknown")
    return errors


def env_ref_errors(doc: Doc, env: dict[str, Any], rendered: Rendered) -> list[str]:
    """A required configMapKeyRef or secretKeyRef names a rendered object (and key)."""
    errors = []
    source = env.get("valueFrom") or {}
    ref = source.get("configMapKeyRef")
    if ref and not ref.get("optional") and ref.get("name") not in rendered.configmaps:
        errors.append(f"{name_of(doc)}: ConfigMap {ref.get('name')!r} not rendered")
    sref = source.get("secretKeyRef")
    if sref and not sref.get("optional"):
        if sref.get("name") not in rendered.secrets:
            errors.append(f"{name_of(doc)}: Secret {sref.get('name')!r} not rendered")
        elif sref.get("key") not in rendered.secrets[sref["name"]]:
            key = sref.get("key")
            errors.append(f"{name_of(doc)}: Secret {sref['name']!r} has no key {key!r}")
    return errors


def env_errors(doc: Doc, c: dict[str, Any], rendered: Rendered) -> list[str]:
    errors = []
    defined: set[str] = set()
    for env in c.get("env") or []:
        errors += env_ref_errors(doc, env, rendered)
        # $(NAME) expands only names defined earlier in the list; else it stays literal
        for used in DEPENDENT_ENV.findall(str(env.get("value", ""))):
            if used not in defined:
                errors.append(
                    f"{name_of(doc)}: {c['name']} env {env.get('name')} uses $({used}) "
                    "before it is defined (Kubernetes would leave it unexpanded)"
                )
        defined.add(env.get("name", ""))
    return errors


def pod_volumes(doc: Doc, pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's volumes by name, a StatefulSet's claim templates included."""
    volumes = {v.get("name"): v for v in pod.get("volumes") or []}
    for claim in (doc.get("spec") or {}).get("volumeClaimTemplates") or []:
        volumes[(claim.get("metadata") or {}).get("name")] = {"claimTemplate": claim}
    return volumes


# (volume source, its field naming the object, the object in messages, where to find it)
VOLUME_REFS: tuple[tuple[str, str, str, Callable[[Rendered], Collection[str]]], ...] = (
    ("configMap", "name", "ConfigMap volume", lambda r: r.configmaps),
    ("persistentVolumeClaim", "claimName", "PVC", lambda r: r.pvcs),
    ("secret", "secretName", "Secret volume", lambda r: r.secrets),
)


def volume_errors(doc: Doc, volumes: dict[str, Any], rendered: Rendered) -> list[str]:
    """Every ConfigMap, PVC and Secret a volume names is rendered."""
    errors = []
    for vol in volumes.values():
        for source, field, what, known in VOLUME_REFS:
            name = (vol.get(source) or {}).get(field)
            if name and name not in known(rendered):
                errors.append(f"{name_of(doc)}: {what} {name!r} not rendered")
    return errors


def container_errors(
    doc: Doc, c: dict[str, Any], volumes: dict[str, Any], rendered: Rendered
) -> list[str]:
    errors = probe_port_errors(doc, c) + env_errors(doc, c, rendered)
    for mount in c.get("volumeMounts") or []:
        if mount.get("name") not in volumes:
            errors.append(f"{name_of(doc)}: {c['name']} mounts unknown volume {mount}")
    return errors


def workload_errors(
    doc: Doc, rendered: Rendered, selectors: dict[tuple[tuple[str, str], ...], str]
) -> list[str]:
    """Selectors, restart policy, the StatefulSet and CronJob rules, container names, and the
    references of every container and volume of one workload."""
    errors = []
    labels, pod = pod_spec(doc)
    if doc["kind"] in LONG_RUNNING:
        errors += selector_errors(doc, labels, selectors)
    if doc["kind"] in {"Job", "CronJob"} and pod.get("restartPolicy") not in ("Never", "OnFailure"):
        errors.append(f"{name_of(doc)}: a Job's restartPolicy must be Never or OnFailure")
    if doc["kind"] == "StatefulSet":
        errors += statefulset_errors(doc, rendered.services)
    if doc["kind"] == "CronJob":
        errors += cronjob_errors(doc)
    names = [c.get("name") for _, c in containers(pod)]
    if len(names) != len(set(names)):
        errors.append(f"{name_of(doc)}: duplicate container names {names}")
    volumes = pod_volumes(doc, pod)
    for _, c in containers(pod):
        errors += container_errors(doc, c, volumes, rendered)
    return errors + volume_errors(doc, volumes, rendered)


def service_errors(doc: Doc, rendered: Rendered) -> list[str]:
    """A Service selects pods, and each of its ports is a container port of the same number."""
    spec = doc.get("spec") or {}
    hits = rendered.pods_matching(spec.get("selector") or {})
    errors = []
    if not hits:
        errors.append(f"{name_of(doc)}: selector {spec.get('selector')} matches no pods")
    cports = [
        cp
        for w in hits
        for c in pod_spec(w)[1].get("containers") or []
        for cp in c.get("ports") or []
    ]
    for port in spec.get("ports") or []:
        target = port.get("targetPort", port.get("port"))
        match = [cp for cp in cports if target in (cp.get("name"), cp.get("containerPort"))]
        if not match:
            errors.append(f"{name_of(doc)}: targetPort {target!r} is no container port")
        elif any(cp["containerPort"] != port.get("port") for cp in match):
            errors.append(
                f"{name_of(doc)}: port {port.get('port')} != containerPort "
                f"{match[0]['containerPort']} (kube play and this project need them equal)"
            )
    return errors


def pdb_errors(doc: Doc, rendered: Rendered) -> list[str]:
    sel = ((doc.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not rendered.pods_matching(sel):
        return [f"{name_of(doc)}: selector {sel} matches no pods"]
    return []


def network_policy_errors(doc: Doc, rendered: Rendered) -> list[str]:
    # an empty podSelector is every pod of the namespace
    sel = ((doc.get("spec") or {}).get("podSelector") or {}).get("matchLabels") or {}
    if sel and not rendered.pods_matching(sel):
        return [f"{name_of(doc)}: podSelector {sel} matches no pods"]
    return []


def hpa_errors(doc: Doc, rendered: Rendered) -> list[str]:
    ref = (doc.get("spec") or {}).get("scaleTargetRef") or {}
    if (ref.get("kind"), ref.get("name")) not in rendered.objects:
        return [f"{name_of(doc)}: scaleTargetRef {ref} not rendered"]
    key = (ref.get("kind"), ref.get("name"))
    target = next(w for w in rendered.workloads if (w["kind"], w["metadata"]["name"]) == key)
    if "replicas" in (target.get("spec") or {}):
        # every `kubectl apply` would set the scale back to it, undoing the autoscaler
        return [f"{name_of(target)}: sets replicas but {name_of(doc)} owns its scale"]
    return []


def hpa_targets(docs: Iterable[Doc]) -> dict[tuple[str, str], int]:
    """(kind, name) of each HPA's target -> its minReplicas."""
    return {
        (ref.get("kind", ""), ref.get("name", "")): int(spec.get("minReplicas") or 1)
        for d in docs
        if d["kind"] == "HorizontalPodAutoscaler"
        for spec in [d.get("spec") or {}]
        for ref in [spec.get("scaleTargetRef") or {}]
    }


def replicas(doc: Doc, docs: Iterable[Doc]) -> int:
    """The replicas a workload runs with once its HPA, if any, has acted (minReplicas)."""
    own = (doc.get("spec") or {}).get("replicas")
    if own is not None:
        return int(own)
    return hpa_targets(docs).get((doc["kind"], doc["metadata"]["name"]), 1)


def service_account_errors(docs: list[Doc]) -> list[str]:
    """Each workload runs as a ServiceAccount of its own (never `default`), rendered with
    automountServiceAccountToken: false: no pod of the project talks to the Kubernetes API,
    and one compromised pod cannot act as another workload."""
    accounts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ServiceAccount"}
    errors: list[str] = []
    users: dict[str, str] = {}
    for doc in docs:
        if doc["kind"] not in POD_OWNERS:
            continue
        name = pod_spec(doc)[1].get("serviceAccountName") or "default"
        if name == "default" or name not in accounts:
            errors.append(f"{name_of(doc)}: serviceAccountName {name!r} is not a rendered one")
        elif accounts[name].get("automountServiceAccountToken") is not False:
            errors.append(f"ServiceAccount/{name}: automountServiceAccountToken must be false")
        if name in users:
            errors.append(f"{name_of(doc)}: shares ServiceAccount {name!r} with {users[name]}")
        users[name] = name_of(doc)
    return errors


# kind -> the check that what such an object points at is rendered
REFERENCE_CHECKS: dict[str, Callable[[Doc, Rendered], list[str]]] = {
    "Service": service_errors,
    "PodDisruptionBudget": pdb_errors,
    "NetworkPolicy": network_policy_errors,
    "HorizontalPodAutoscaler": hpa_errors,
}


def disruption_budget_errors(docs: list[Doc]) -> list[str]:
    """A long-running workload of several replicas has a PodDisruptionBudget over its pods."""
    budgets = [
        ((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
    ]
    errors = []
    for doc in docs:
        if doc["kind"] in LONG_RUNNING and replicas(doc, docs) > 1:
            labels = pod_spec(doc)[0]
            if not any(matches(sel, labels) for sel in budgets):
                errors.append(f"{name_of(doc)}: several replicas and no PodDisruptionBudget")
    return errors


def semantic_errors(docs: list[Doc]) -> list[str]:
    rendered = Rendered.of(docs)
    errors = identity_errors(docs)
    selectors: dict[tuple[tuple[str, str], ...], str] = {}
    for doc in rendered.workloads:
        errors += workload_errors(doc, rendered, selectors)
    for doc in docs:
        check = REFERENCE_CHECKS.get(doc["kind"])
        if check is not None:
            errors += check(doc, rendered)
    return errors + disruption_budget_errors(docs) + service_account_errors(docs)


# --- 3. security baseline -------------------------------------------------------------------


def _context(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("securityContext") or {}


# (what a pod must do, whether it does)
POD_RULES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    (
        f"pod must set runAsNonRoot: true and runAsUser: {UID}",
        lambda pod: (
            _context(pod).get("runAsNonRoot") is True and _context(pod).get("runAsUser") == UID
        ),
    ),
    (
        "pod seccompProfile must be RuntimeDefault",
        lambda pod: (_context(pod).get("seccompProfile") or {}).get("type") == "RuntimeDefault",
    ),
    (
        "automountServiceAccountToken must be false",
        lambda pod: pod.get("automountServiceAccountToken") is False,
    ),
    (
        "host namespaces are not allowed",
        lambda pod: not (pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC")),
    ),
)

# (what a container must do, whether it does)
CONTAINER_RULES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    (
        "allowPrivilegeEscalation must be false",
        lambda c: _context(c).get("allowPrivilegeEscalation") is False,
    ),
    (
        "readOnlyRootFilesystem must be true",
        lambda c: _context(c).get("readOnlyRootFilesystem") is True,
    ),
    (
        "capabilities must drop ALL",
        lambda c: (_context(c).get("capabilities") or {}).get("drop") == ["ALL"],
    ),
    (
        "privileged or another uid",
        lambda c: not _context(c).get("privileged") and _context(c).get("runAsUser") in (None, UID),
    ),
)

SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN")


def pod_baseline_errors(doc: Doc, pod: dict[str, Any]) -> list[str]:
    where = name_of(doc)
    errors = [f"{where}: {rule}" for rule, holds in POD_RULES if not holds(pod)]
    for vol in pod.get("volumes") or []:
        if "hostPath" in vol:
            errors.append(f"{where}: hostPath volume {vol.get('name')}")
    persistent = (doc.get("spec") or {}).get("volumeClaimTemplates") or [
        v for v in pod.get("volumes") or [] if "persistentVolumeClaim" in v
    ]
    if persistent and _context(pod).get("fsGroup") != UID:
        errors.append(f"{where}: a pod with a PVC needs fsGroup: {UID} (to write to it)")
    if doc["kind"] in {"Job", "CronJob"}:
        spec = doc.get("spec") or {}
        if doc["kind"] == "CronJob":
            spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        if not spec.get("activeDeadlineSeconds"):
            errors.append(f"{where}: a Job needs activeDeadlineSeconds (its liveness bound)")
    return errors


def image_pinned(image: str) -> bool:
    """A tag other than latest (a registry's :port is no tag)."""
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    return bool(tag) and tag != "latest"


def probe_rule_errors(cw: str, kind: str, role: str, c: dict[str, Any]) -> list[str]:
    """Long-running main containers have both probes; init containers may have none."""
    errors = []
    if role == "main" and kind in LONG_RUNNING:
        errors += [f"{cw}: needs a {p}" for p in ("readinessProbe", "livenessProbe") if p not in c]
    if role == "init":
        errors += [
            f"{cw}: Kubernetes rejects {p} on init containers"
            for p in ("readinessProbe", "livenessProbe", "startupProbe")
            if p in c
        ]
    return errors


def container_baseline_errors(doc: Doc, role: str, c: dict[str, Any]) -> list[str]:
    cw = f"{name_of(doc)}: container {c.get('name')}"
    errors = [f"{cw}: {rule}" for rule, holds in CONTAINER_RULES if not holds(c)]
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        if not {"cpu", "memory"} <= set(res.get(kind) or {}):
            errors.append(f"{cw}: needs {kind} for cpu and memory")
    image = str(c.get("image", ""))
    if not image_pinned(image):
        errors.append(f"{cw}: image {image!r} needs a pinned tag")
    errors += probe_rule_errors(cw, doc["kind"], role, c)
    for env in c.get("env") or []:
        if SECRET_NAME.search(env.get("name", "")) and "value" in env:
            errors.append(f"{cw}: {env['name']} must come from a Secret")
    return errors


def baseline_errors(docs: list[Doc]) -> list[str]:
    errors: list[str] = []
    for doc in docs:
        if doc["kind"] not in POD_OWNERS:
            continue
        _, pod = pod_spec(doc)
        errors += pod_baseline_errors(doc, pod)
        for role, c in containers(pod):
            errors += container_baseline_errors(doc, role, c)
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


Placed = tuple[str, str, dict[str, Any]]
"""(workload, container role, container)"""


def project_containers(docs: list[Doc]) -> dict[str, list[Placed]]:
    """Container name -> where the project's workloads run a container of that name."""
    found: dict[str, list[Placed]] = {}
    for doc in docs:
        if doc["kind"] not in POD_OWNERS:
            continue
        labels, pod = pod_spec(doc)
        if labels.get("app.kubernetes.io/part-of") != "ml-system-patterns":
            continue
        for role, c in containers(pod):
            found.setdefault(c["name"], []).append((name_of(doc), role, c))
    return found


def placement_errors(where: str, proc: Process, placed: list[Placed]) -> list[str]:
    """The process runs in the role and workload kind its declaration says."""
    kinds, role = _kinds_for(proc)
    if any(w.split("/")[0] in kinds and r == role for w, r, _ in placed):
        return []
    seen = ", ".join(f"{r} container of {w}" for w, r, _ in placed)
    want = "an initContainer" if role == "init" else "a main container"
    return [
        f"{where} is a {seen}; declared init={proc.init}, kube_kind={proc.kube_kind}: "
        f"it must be {want} of a {'/'.join(sorted(kinds))}"
    ]


def container_agreement_errors(
    where: str, proc: Process, workload: str, c: dict[str, Any]
) -> list[str]:
    """The container runs the declared command, env names and port."""
    errors = []
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


def declaration_errors(pattern: Pattern, docs: list[Doc]) -> list[str]:
    """Each declared process is a container of a workload of the declared kind (an
    initContainer when `init` and no `kube_kind`, a Deployment/StatefulSet container by
    default, a Job or CronJob container when `kube_kind` says so), and every container of that
    name runs the same command with the same environment variable names (plus Secret parts of
    composed values, see secret_only_env)."""
    found = project_containers(docs)
    errors = []
    for proc in pattern.processes:
        where = f"{pattern.id}: {proc.name}"
        if proc.name not in found:
            errors.append(f"{pattern.id}: process {proc.name!r} has no container in the overlay")
            continue
        errors += placement_errors(where, proc, found[proc.name])
        for workload, _, c in found[proc.name]:
            errors += container_agreement_errors(where, proc, workload, c)
    return errors
