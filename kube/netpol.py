"""NetworkPolicy, evaluated with no cluster: who may call each Service of an overlay.

Every overlay brings components/network-policy (default deny, ingress and egress, DNS to
kube-dns allowed) and its own allow-lists. This module evaluates the rendered policies as the
NetworkPolicy API defines them (a pod selected by no policy of a direction is open in that
direction; else a connection needs a rule of a selecting policy whose peer and port match; the
two directions are checked independently, both must allow) and compares the result with the
callers the pattern declares (patterns/<id>/pattern.py):

- `{url:PROC}` in a process's env: it calls PROC's Service (serial's stages, parallel's
  backends, prep's pred, the synchronous client's server, sync_async's fast);
- `{redis}`, `{postgres}`, `{mlflow}`, or a database URL (`MLSP_DATABASE_URL`, SQLite locally,
  PostgreSQL on Kubernetes): it calls the Service the rendered value names;
- a container of a component no process declares (MLflow's train-register Job): the Services
  its rendered env URLs name.

The entry Service (the pattern's entry process, its Service named after the pattern) is what
clients reach (an ingress controller, a port-forward): any source on its port; so are the
Services of the processes a pattern declares `public`. Every other
Service admits exactly its declared callers, and every workload may reach exactly its declared
callees and DNS: nothing else, from inside the namespace or outside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from kube.manifests import NAMESPACE, POD_OWNERS, Doc, containers, matches, name_of, pod_spec
from patterns.declare import Pattern

TEMPLATE_URL = re.compile(r"\{url:([\w-]+)\}")
DEPENDENCY = re.compile(r"\{(redis|postgres|mlflow)\}")
URL_HOST = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?([a-z0-9-]+)(?::(\d+))?")
DATABASE_VARS = {"MLSP_DATABASE_URL"}


@dataclass(frozen=True)
class Pod:
    """A connection's end: a pod's labels and namespace (its namespace's labels are the
    `kubernetes.io/metadata.name` label Kubernetes sets)."""

    labels: tuple[tuple[str, str], ...]
    namespace: str = NAMESPACE

    @classmethod
    def of(cls, labels: dict[str, str], namespace: str = NAMESPACE) -> Pod:
        return cls(tuple(sorted(labels.items())), namespace)


OUTSIDE = Pod.of({"app": "anything"}, "elsewhere")
"""A pod of another namespace (an ingress controller, a scraper, an attacker)."""
STRANGER = Pod.of(
    {"app.kubernetes.io/name": "stranger", "app.kubernetes.io/part-of": "ml-system-patterns"}
)
"""A pod of this namespace, of the project, that this pattern does not declare (another
pattern's pod: they share the namespace)."""
DNS = Pod.of({"k8s-app": "kube-dns"}, "kube-system")


def _selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector (matchLabels only; matchExpressions are refused by policy_errors);
    an empty selector selects everything."""
    wanted = (selector or {}).get("matchLabels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())


def _peer_matches(peer: dict[str, Any], pod: Pod) -> bool:
    if "ipBlock" in peer:
        return True  # an address range: taken as reaching anything (none is used here)
    if "namespaceSelector" in peer:
        ns_labels = {"kubernetes.io/metadata.name": pod.namespace}
        if not _selects(peer["namespaceSelector"], ns_labels):
            return False
    elif pod.namespace != NAMESPACE:
        return False
    return _selects(peer.get("podSelector"), dict(pod.labels))


def _port_matches(ports: list[dict[str, Any]] | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(
        p.get("port") in (None, port) and p.get("protocol", "TCP") == protocol for p in ports
    )


def _allows(
    policies: list[Doc], direction: str, pod: Pod, peer: Pod, port: int, proto: str = "TCP"
) -> bool:
    """Whether `pod`'s policies of `direction` (Ingress: peer -> pod; Egress: pod -> peer)
    let the connection through."""
    if pod.namespace != NAMESPACE:
        return True  # another namespace's policies are not ours to judge
    selecting = [
        p
        for p in policies
        if direction in (p["spec"].get("policyTypes") or [])
        and _selects(p["spec"].get("podSelector"), dict(pod.labels))
    ]
    if not selecting:
        return True
    key, side = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    return any(
        (not rule.get(side) or any(_peer_matches(x, peer) for x in rule[side]))
        and _port_matches(rule.get("ports"), port, proto)
        for p in selecting
        for rule in p["spec"].get(key) or []
    )


def connects(policies: list[Doc], src: Pod, dst: Pod, port: int, proto: str = "TCP") -> bool:
    """src may open a connection to dst:port (both its egress and dst's ingress allow it)."""
    return _allows(policies, "Egress", src, dst, port, proto) and _allows(
        policies, "Ingress", dst, src, port, proto
    )


# --- what the pattern declares -------------------------------------------------------------


def _host(value: str) -> str:
    m = URL_HOST.match(value)
    return m.group(1) if m else ""


def _workloads_running(docs: list[Doc], container: str, role: str = "main") -> list[Doc]:
    return [
        d
        for d in docs
        if d["kind"] in POD_OWNERS
        and any(c["name"] == container and (r == role or role == "any")
                for r, c in containers(pod_spec(d)[1]))
    ]  # fmt: skip


def _service_of(docs: list[Doc], workload: Doc) -> list[str]:
    labels = pod_spec(workload)[0]
    return [
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Service" and matches(d["spec"].get("selector") or {}, labels)
    ]


def _rendered_env(workload: Doc, container: str) -> dict[str, str]:
    for _, c in containers(pod_spec(workload)[1]):
        if c["name"] == container:
            return {e["name"]: str(e.get("value", "")) for e in c.get("env") or []}
    return {}


def _process_calls(pattern: Pattern, docs: list[Doc]) -> set[tuple[str, str]]:
    """(workload, Service or host) of the declared processes' URLs (module docstring)."""
    calls: set[tuple[str, str]] = set()
    for proc in pattern.processes:
        for workload in _workloads_running(docs, proc.name, "any"):
            caller = workload["metadata"]["name"]
            rendered = _rendered_env(workload, proc.name)
            for var, value in proc.env.items():
                targets = [t for c in TEMPLATE_URL.findall(value)
                           for t in _workloads_running(docs, c)]  # fmt: skip
                calls |= {(caller, s) for t in targets for s in _service_of(docs, t)}
                host = _host(rendered.get(var, ""))
                if host and (DEPENDENCY.search(value) or var in DATABASE_VARS):
                    calls.add((caller, host))
    return calls


def _component_calls(pattern: Pattern, docs: list[Doc]) -> set[tuple[str, str]]:
    """(workload, host) of the rendered env URLs of containers no process declares."""
    declared = {p.name for p in pattern.processes}
    return {
        (doc["metadata"]["name"], host)
        for doc in docs
        if doc["kind"] in POD_OWNERS
        for _, c in containers(pod_spec(doc)[1])
        if c["name"] not in declared
        for value in _rendered_env(doc, c["name"]).values()
        if (host := _host(value))
    }


def declared_calls(pattern: Pattern, docs: list[Doc]) -> set[tuple[str, str]]:
    """(caller workload, Service) of every call the pattern declares (module docstring)."""
    calls = _process_calls(pattern, docs) | _component_calls(pattern, docs)
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    return {(w, s) for w, s in calls if s in services}


def entry_service(pattern: Pattern) -> str:
    return pattern.id.replace("_", "-")


def public_services(pattern: Pattern, docs: list[Doc]) -> set[str]:
    """The entry Service, and the Services of the processes the pattern declares `public`
    (clients reach them too: prediction_monitoring's api takes the predictions it watches)."""
    public = {entry_service(pattern)}
    for doc in docs:
        if doc["kind"] in POD_OWNERS:
            names = {c["name"] for _, c in containers(pod_spec(doc)[1])}
            if names & set(pattern.public):
                public.update(_service_of(docs, doc))
    return public


# --- the check -------------------------------------------------------------------------------


def policy_errors(policies: list[Doc]) -> list[str]:
    """Only what this evaluator reads: explicit policyTypes, matchLabels, numeric ports."""
    errors = []
    for p in policies:
        spec = p.get("spec") or {}
        if not spec.get("policyTypes"):
            errors.append(f"{name_of(p)}: needs explicit policyTypes")
        text = repr(spec)
        if "matchExpressions" in text:
            errors.append(f"{name_of(p)}: matchExpressions are not used here (matchLabels)")
        for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
            for port in rule.get("ports") or []:
                if not isinstance(port.get("port"), int):
                    errors.append(f"{name_of(p)}: port {port.get('port')!r} must be a number")
    return errors


def _service_ports(svc: Doc) -> list[int]:
    return [int(p["port"]) for p in svc["spec"].get("ports") or []]


def _default_deny_errors(policies: list[Doc]) -> list[str]:
    """A policy over every pod, both directions, and DNS to kube-dns allowed."""
    deny = [
        p
        for p in policies
        if not (p["spec"].get("podSelector") or {}).get("matchLabels")
        and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes") or [])
    ]
    errors = [] if deny else ["no default-deny NetworkPolicy (components/network-policy)"]
    if not connects(policies, STRANGER, DNS, 53, "UDP") or not connects(
        policies, STRANGER, DNS, 53, "TCP"
    ):
        errors.append("pods cannot reach DNS (kube-system k8s-app=kube-dns, port 53)")
    if connects(policies, STRANGER, OUTSIDE, 443):
        errors.append("egress to other namespaces is open (a stranger reaches port 443)")
    return errors


def _service_errors(
    policies: list[Doc], svc: Doc, target: str, pods: dict[str, Pod], calls: set[Any], public: bool
) -> list[str]:
    """Who reaches one workload behind a Service: egress only from its declared callers;
    ingress from those, or from anyone for the entry Service; nobody else, in or out."""
    errors = []
    name, dst = svc["metadata"]["name"], pods[target]
    for port in _service_ports(svc):
        for caller, src in ((c, p) for c, p in pods.items() if c != target):
            declared = (caller, name) in calls
            for direction, pod, peer, want, whose in (
                ("Egress", src, dst, declared, caller),
                ("Ingress", dst, src, declared or public, target),
            ):
                if _allows(policies, direction, pod, peer, port) != want:
                    verb = "cannot reach" if want else "reaches"
                    errors.append(
                        f"NetworkPolicy: {caller} {verb} Service {name}:{port} "
                        f"({direction.lower()} of {whose})"
                    )
        for src, who in ((OUTSIDE, "another namespace"), (STRANGER, "an undeclared pod")):
            if _allows(policies, "Ingress", dst, src, port) != public:
                verb = "cannot reach" if public else "reaches"
                errors.append(f"NetworkPolicy: {who} {verb} Service {name}:{port}")
    return errors


def network_errors(pattern: Pattern, docs: list[Doc]) -> list[str]:
    """Each Service admits exactly its declared callers (the entry Service: anyone), and no
    workload reaches anything else but DNS."""
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    errors = policy_errors(policies) + _default_deny_errors(policies)
    calls = declared_calls(pattern, docs)
    workloads = {d["metadata"]["name"]: d for d in docs if d["kind"] in POD_OWNERS}
    pods = {name: Pod.of(pod_spec(d)[0]) for name, d in workloads.items()}
    for name, pod in pods.items():
        for peer, who in ((OUTSIDE, "another namespace"), (STRANGER, "an undeclared pod")):
            if _allows(policies, "Egress", pod, peer, 443):
                errors.append(f"NetworkPolicy: {name} reaches {who} (egress)")
    open_to_all = public_services(pattern, docs)
    for svc in (d for d in docs if d["kind"] == "Service"):
        public = svc["metadata"]["name"] in open_to_all
        for target, doc in workloads.items():
            if svc["metadata"]["name"] in _service_of(docs, doc):
                errors += _service_errors(policies, svc, target, pods, calls, public)
    return errors
