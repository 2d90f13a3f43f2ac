"""`make deploy|undeploy PATTERN=x` on kind or minikube, and a port-forward for load tests.

deploy: build the pattern's images, load them into the cluster (as image archives, so podman
and docker both work), render the overlay with the built tags, create the deploy-time Secrets
the namespace lacks (random values, never in git), apply the overlay, wait for every
Deployment to roll out (kubernetes Python client), delete the generated ConfigMaps of older
revisions that nothing reads any more, print how to reach the Service.
Applying is left to `kubectl apply` (kustomize output, field ownership, pruning semantics);
waiting and inspecting use the client because they need logic, not a one-liner.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import yaml

from kube import images as img
from kube import manifests
from patterns.procs import free_port

Cluster = Literal["kind", "minikube"]
NS = manifests.NAMESPACE


class DeployError(RuntimeError):
    pass


def _out(cmd: list[str]) -> str:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip() if result.returncode == 0 else ""


def detect_cluster(
    env: dict[str, str] | None = None, run: Callable[[list[str]], str] = _out
) -> tuple[Cluster, str]:
    """(kind|minikube, cluster name) from CLUSTER, else the current kubectl context."""
    env = dict(os.environ if env is None else env)
    wanted = env.get("CLUSTER", "")
    context = run(["kubectl", "config", "current-context"])
    if wanted not in ("", "kind", "minikube"):
        raise DeployError(f"CLUSTER={wanted!r}: use kind or minikube")
    if wanted == "kind" or (not wanted and context.startswith("kind-")):
        name = context.removeprefix("kind-") if context.startswith("kind-") else ""
        return "kind", env.get("KIND_CLUSTER_NAME") or name or "kind"
    if wanted == "minikube" or (not wanted and context == "minikube"):
        return "minikube", env.get("MINIKUBE_PROFILE") or "minikube"
    raise DeployError(
        f"no kind or minikube context (current: {context or 'none'}). Start one "
        "(`kind create cluster` or `minikube start`) or set CLUSTER=kind|minikube."
    )


def load_command(cluster: Cluster, name: str, archive: Path) -> list[str]:
    if cluster == "kind":
        return ["kind", "load", "image-archive", str(archive), "--name", name]
    return ["minikube", "image", "load", str(archive), "--profile", name]


def load_images(cluster: Cluster, name: str, refs: list[str]) -> None:
    engine = img.engine()
    with tempfile.TemporaryDirectory(prefix="mlsp-images-") as tmp:
        for ref in refs:
            archive = Path(tmp) / (ref.replace("/", "_").replace(":", "_") + ".tar")
            print(f"load {ref} into {cluster} ({name})", flush=True)
            subprocess.run([engine, "save", "-o", str(archive), ref], check=True)
            subprocess.run(load_command(cluster, name, archive), check=True)


def rendered(pattern: str, refs: dict[str, str]) -> list[manifests.Doc]:
    """The overlay with every image set to the one just built (kustomize `images:`)."""
    return manifests.load(manifests.render(pattern, refs))


def core_api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.CoreV1Api()


PART_OF = "app.kubernetes.io/part-of"

# how a pod spec names a ConfigMap or a Secret: (volume source, its name field, env
# valueFrom key, envFrom key); a projected volume's sources use the volume source's key
REFERENCES = {
    "ConfigMap": ("configMap", "name", "configMapKeyRef", "configMapRef"),
    "Secret": ("secret", "secretName", "secretKeyRef", "secretRef"),
}


def objects_read(pod: dict[str, Any], kind: str) -> set[str]:
    """Names of the ConfigMaps or Secrets (`kind`) a pod spec reads: volumes, projected
    volumes, env and envFrom of every container, init containers included."""
    volume, name_field, env_key, from_key = REFERENCES[kind]
    used = set()
    for vol in pod.get("volumes") or []:
        used.add((vol.get(volume) or {}).get(name_field))
        for src in (vol.get("projected") or {}).get("sources") or []:
            used.add((src.get(volume) or {}).get("name"))
    for _, c in manifests.containers(pod):
        for env in c.get("env") or []:
            used.add(((env.get("valueFrom") or {}).get(env_key) or {}).get("name"))
        for src in c.get("envFrom") or []:
            used.add((src.get(from_key) or {}).get("name"))
    return {name for name in used if name}


def secrets_used(docs: list[manifests.Doc]) -> set[str]:
    """Names of the Secrets the docs' pods read."""
    pods = [manifests.pod_spec(d)[1] for d in docs if d["kind"] in manifests.POD_OWNERS]
    return set().union(*(objects_read(pod, "Secret") for pod in pods))


def ensure_secrets(
    core: Any,
    docs: list[manifests.Doc],
    values: Callable[[], dict[tuple[str, str], str]] = manifests.generated_secret_values,
) -> list[str]:
    """Create each deploy-time Secret (manifests.DEPLOY_TIME_SECRETS) the docs use and the
    namespace lacks, with random values; an existing one is kept as it is (PostgreSQL's
    volume was initialised with its password). Returns the names created."""
    from kubernetes.client import V1ObjectMeta, V1Secret
    from kubernetes.client.exceptions import ApiException

    created = []
    for name in sorted(secrets_used(docs) & set(manifests.DEPLOY_TIME_SECRETS)):
        try:
            core.read_namespaced_secret(name, NS)
            print(f"Secret {name}: kept (already in {NS})", flush=True)
            continue
        except ApiException as exc:
            if exc.status != 404:
                raise
        data = {key: value for (secret, key), value in values().items() if secret == name}
        body = V1Secret(
            metadata=V1ObjectMeta(name=name, labels={PART_OF: "ml-system-patterns"}),
            type="Opaque",
            string_data=data,
        )
        try:
            core.create_namespaced_secret(NS, body)
        except ApiException as exc:
            if exc.status != 409:  # made by a concurrent deploy in between: theirs is kept
                raise
        print(f"Secret {name}: created with random values (kubectl -n {NS} get secret {name})")
        created.append(name)
    return created


def stale_configmaps(
    generated: set[str], applied: set[str], live: list[manifests.Doc]
) -> list[str]:
    """The generated ConfigMaps to delete: not just applied, and read by no live object that
    can run a pod. `live` holds the namespace's Deployments, StatefulSets, Jobs, CronJobs,
    ReplicaSets (old ones too: `kubectl rollout undo` needs theirs, and revisionHistoryLimit
    bounds how many a Deployment keeps) and Pods."""
    used = set().union(*(objects_read(manifests.pod_spec(d)[1], "ConfigMap") for d in live))
    return sorted(generated - applied - used)


def live_objects(apps: Any, batch: Any, core: Any) -> tuple[set[str], list[manifests.Doc]]:
    """(generated ConfigMaps, objects that can run pods) in the namespace, as manifest dicts."""
    from kubernetes.client import ApiClient

    plain: Callable[[Any], manifests.Doc] = ApiClient().sanitize_for_serialization

    def listed(call: Callable[..., Any], kind: str, **kw: Any) -> list[manifests.Doc]:
        return [{**plain(item), "kind": kind} for item in call(NS, **kw).items]

    live = [
        *listed(apps.list_namespaced_deployment, "Deployment"),
        *listed(apps.list_namespaced_stateful_set, "StatefulSet"),
        *listed(apps.list_namespaced_replica_set, "ReplicaSet"),
        *listed(batch.list_namespaced_job, "Job"),
        *listed(batch.list_namespaced_cron_job, "CronJob"),
        *listed(core.list_namespaced_pod, "Pod"),
    ]
    maps = listed(core.list_namespaced_config_map, "ConfigMap", label_selector=manifests.GENERATED)
    return {m["metadata"]["name"] for m in maps}, live


def prune_configmaps(docs: list[manifests.Doc], apps: Any, batch: Any, core: Any) -> list[str]:
    """After a rollout: delete the generated ConfigMaps nothing reads any more (an older
    revision's, left by every config change); returns their names."""
    applied = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    generated, live = live_objects(apps, batch, core)
    stale = stale_configmaps(generated, applied, live)
    for name in stale:
        print(f"delete ConfigMap {name}: an older revision's, read by nothing", flush=True)
        core.delete_namespaced_config_map(name, NS)
    return stale


def apply(docs: list[manifests.Doc]) -> None:
    jobs = [d["metadata"]["name"] for d in docs if d["kind"] == "Job"]
    if jobs:  # a Job's pod template is immutable: rerun it (registration is idempotent)
        subprocess.run(
            ["kubectl", "-n", NS, "delete", "job", "--ignore-not-found", "--wait", *jobs],
            check=True,
        )
    subprocess.run(
        ["kubectl", "apply", "-f", "-"], input=yaml.safe_dump_all(docs), text=True, check=True
    )


def rollout_done(dep: Any) -> tuple[bool, str]:
    """A Deployment (kubernetes client V1Deployment) has fully rolled out."""
    want = dep.spec.replicas if dep.spec.replicas is not None else 1
    st = dep.status
    observed = (st.observed_generation or 0) >= (dep.metadata.generation or 0)
    updated, available = st.updated_replicas or 0, st.available_replicas or 0
    total = st.replicas or 0
    state = f"{updated}/{want} updated, {available}/{want} available, {total} total"
    return observed and updated == want and available == want and total == want, state


def _poll_all(
    names: list[str],
    read: Callable[[str], tuple[bool | None, str]],
    what: str,
    hint: str,
    timeout: float,
    sleep: Callable[[float], None],
) -> None:
    """Poll `read(name)` -> (True done | False failed | None not yet, state) for every name,
    printing state changes, until all are done; raise on a failure or after `timeout`."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    last: dict[str, str] = {}
    while pending:
        for name in list(pending):
            done, state = read(name)
            if state != last.get(name):
                print(f"  {name}: {state}", flush=True)
                last[name] = state
            if done is False:
                raise DeployError(f"{what} {name} failed: kubectl -n {NS} logs job/{name}")
            if done:
                pending.remove(name)
        if pending:
            if time.monotonic() > deadline:
                raise DeployError(
                    f"{what} not done after {timeout:.0f} s: {', '.join(pending)} "
                    f"(kubectl -n {NS} {hint} {pending[0]})"
                )
            sleep(2)


def wait_rollout(
    api: Any, names: list[str], timeout: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll AppsV1Api.read_namespaced_deployment until every Deployment has rolled out."""

    def read(name: str) -> tuple[bool | None, str]:
        done, state = rollout_done(api.read_namespaced_deployment(name, NS))
        return (True if done else None), state

    _poll_all(names, read, "Deployment", "describe deploy", timeout, sleep)


def job_state(job: Any) -> tuple[bool | None, str]:
    """(True done | False failed | None running, summary) of a V1Job."""
    st = job.status
    conditions = {c.type: c.status for c in st.conditions or []}
    state = f"{st.active or 0} active, {st.succeeded or 0} succeeded, {st.failed or 0} failed"
    if conditions.get("Complete") == "True":
        return True, state
    if conditions.get("Failed") == "True":
        return False, state
    return None, state


def wait_jobs(
    api: Any, names: list[str], timeout: float, sleep: Callable[[float], None] = time.sleep
) -> None:
    """Poll BatchV1Api.read_namespaced_job until every Job completed; raise on a failed one."""
    _poll_all(
        names,
        lambda name: job_state(api.read_namespaced_job(name, NS)),
        "Job",
        "describe job",
        timeout,
        sleep,
    )


def init_steps(pattern: str, docs: list[manifests.Doc]) -> tuple[list[str], list[str]]:
    """(Jobs, CronJobs) that run the pattern's `init` processes (patterns/declare.py): the
    runner runs them before the servers, so deploy waits for the Jobs and starts one run of
    each CronJob at once instead of at its first schedule."""
    from patterns.runner import load

    init = {p.name for p in load(pattern).processes if p.init and p.kube_kind}
    jobs: list[str] = []
    crons: list[str] = []
    for doc in docs:
        if doc["kind"] in {"Job", "CronJob"}:
            names = {c["name"] for _, c in manifests.containers(manifests.pod_spec(doc)[1])}
            if names & init:
                (jobs if doc["kind"] == "Job" else crons).append(doc["metadata"]["name"])
    return jobs, crons


def run_cronjob_now(name: str) -> str:
    """`kubectl create job --from=cronjob/NAME NAME-now` (replacing an earlier one)."""
    job = f"{name}-now"
    subprocess.run(
        ["kubectl", "-n", NS, "delete", "job", "--ignore-not-found", "--wait", job], check=True
    )
    subprocess.run(
        ["kubectl", "-n", NS, "create", "job", f"--from=cronjob/{name}", job], check=True
    )
    return job


def batch_api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.BatchV1Api()


def apps_api() -> Any:
    from kubernetes import client, config

    config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.AppsV1Api()


def service_name(pattern: str) -> str:
    return pattern.replace("_", "-")


def deploy(pattern: str, timeout: float = 600) -> None:
    pattern = manifests_pattern(pattern)
    cluster, name = detect_cluster()
    for tool in ("kubectl", cluster):
        if not shutil.which(tool):
            raise DeployError(f"{tool} is not installed")
    refs = img.build(pattern)
    load_images(cluster, name, list(refs.values()))
    docs = rendered(pattern, refs)
    apply([d for d in docs if d["kind"] == "Namespace"])
    ensure_secrets(core_api(), docs)
    apply(docs)
    init_jobs, init_crons = init_steps(pattern, docs)
    if init_jobs:  # e.g. batch_inference's seed, before its first scoring run
        print(f"waiting for {', '.join(init_jobs)}", flush=True)
        wait_jobs(batch_api(), init_jobs, timeout)
    started = [run_cronjob_now(name) for name in init_crons]
    deployments = [d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"]
    print(f"waiting for {', '.join(deployments)} to roll out", flush=True)
    wait_rollout(apps_api(), deployments, timeout)
    prune_configmaps(docs, apps_api(), batch_api(), core_api())
    others = [d["metadata"]["name"] for d in docs if d["kind"] == "Job"]
    others = [name for name in others if name not in init_jobs]
    if started or others:  # a scoring run, a client Job, model_load's training Job
        print(f"waiting for {', '.join(started + others)}", flush=True)
        wait_jobs(batch_api(), started + others, timeout)
    svc = service_name(pattern)
    print(
        f"\n{pattern} is running in namespace {NS} on {cluster}. Reach it with:\n"
        f"  kubectl -n {NS} port-forward svc/{svc} 8000:8000\n"
        f"and see patterns/{pattern}/README.md (Run on Kubernetes) for requests to send.\n"
        f"Load test through a port-forward: make loadtest PATTERN={pattern} TARGET=k8s\n"
        f"Remove it: make undeploy PATTERN={pattern}"
    )


Obj = tuple[str, str]
"""(kind, name) of an object in the namespace"""
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob")


def objects(docs: list[manifests.Doc]) -> set[Obj]:
    """What an overlay puts into the namespace (the Namespace itself is everyone's)."""
    return {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] != "Namespace"}


def deployed_patterns(rendered: dict[str, set[Obj]], present: set[Obj]) -> set[str]:
    """The patterns deployed in the cluster: those with at least one object in `present` that
    no other overlay renders (its own Deployments, Jobs ...; a shared Redis says nothing)."""
    deployed = set()
    for pattern, objs in rendered.items():
        shared = set().union(*(o for p, o in rendered.items() if p != pattern))
        if (objs - shared) & present:
            deployed.add(pattern)
    return deployed


def undeploy_plan(
    pattern: str, rendered: dict[str, set[Obj]], present: set[Obj]
) -> tuple[list[Obj], dict[Obj, list[str]]]:
    """(objects to delete, {object kept: the other deployed patterns that use it}). An object
    of several overlays (a component: Redis for asynchronous and sync_async, PostgreSQL for
    batch_inference and data_cache, redis-cache for prediction_cache and data_cache, the
    default-deny NetworkPolicy for all) stays until its last deployed user is undeployed."""
    others = deployed_patterns(rendered, present) - {pattern}
    kept = {
        obj: users
        for obj in rendered[pattern]
        if (users := sorted(p for p in others if obj in rendered[p]))
    }
    return sorted(rendered[pattern] - set(kept)), kept


def present_workloads(apps: Any, batch: Any) -> set[Obj]:
    """The project's workloads in the namespace (Kubernetes API, label part-of)."""
    selector = f"{PART_OF}=ml-system-patterns"
    listed = (
        ("Deployment", apps.list_namespaced_deployment),
        ("StatefulSet", apps.list_namespaced_stateful_set),
        ("Job", batch.list_namespaced_job),
        ("CronJob", batch.list_namespaced_cron_job),
    )
    return {
        (kind, item.metadata.name)
        for kind, list_them in listed
        for item in list_them(NS, label_selector=selector).items
    }


def undeploy(pattern: str, apps: Any = None, batch: Any = None) -> list[Obj]:
    """Delete the overlay's objects, keeping the shared namespace and every object another
    deployed pattern renders too (undeploy_plan); returns what was deleted."""
    pattern = manifests_pattern(pattern)
    docs = {o: manifests.load(manifests.render(o)) for o in manifests.overlays()}
    present = present_workloads(apps or apps_api(), batch or batch_api())
    delete, kept = undeploy_plan(pattern, {o: objects(d) for o, d in docs.items()}, present)
    for (kind, name), users in kept.items():
        print(f"keep {kind}/{name}: still used by {', '.join(users)}", flush=True)
    kubectl_delete([d for d in docs[pattern] if (d["kind"], d["metadata"]["name"]) in delete])
    return delete


def kubectl_delete(docs: list[manifests.Doc]) -> None:
    if docs:
        subprocess.run(
            ["kubectl", "delete", "--ignore-not-found", "-f", "-"],
            input=yaml.safe_dump_all(docs),
            text=True,
            check=True,
        )


def manifests_pattern(name: str) -> str:
    from patterns.runner import load

    pattern = load(name).id
    if pattern not in manifests.overlays():
        raise DeployError(f"{pattern} has no overlay in manifests/patterns/ yet")
    return pattern


@contextlib.contextmanager
def port_forward(pattern: str, port: int = 8000) -> Iterator[str]:
    """`kubectl port-forward` to the pattern's Service; yields the local base URL."""
    local = free_port()
    svc = service_name(manifests_pattern(pattern))
    # stderr goes to a file: a pipe nobody reads would stall kubectl once full, and reading
    # one while kubectl runs would block
    with tempfile.TemporaryFile() as errors:
        try:
            proc = subprocess.Popen(
                ["kubectl", "-n", NS, "port-forward", f"svc/{svc}", f"{local}:{port}"],
                stdout=subprocess.DEVNULL,
                stderr=errors,
            )
        except OSError as exc:
            raise DeployError(f"port-forward to svc/{svc}: cannot run kubectl: {exc}") from exc
        try:
            deadline = time.monotonic() + 30
            while True:
                with (
                    contextlib.suppress(OSError),
                    socket.create_connection(("127.0.0.1", local), 1),
                ):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.terminate()
                    proc.wait(timeout=10)
                    errors.seek(0)
                    err = errors.read(4096).decode(errors="replace").strip()
                    raise DeployError(f"port-forward to svc/{svc} failed: {err}")
                time.sleep(0.2)
            yield f"http://127.0.0.1:{local}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)
