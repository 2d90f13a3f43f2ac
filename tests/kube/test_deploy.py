"""make deploy's logic that needs no cluster: which cluster, how images get in, when a rollout
is done. The Kubernetes API is the one thing that cannot exist here, so it is a fake."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from kube import deploy
from kube.deploy import DeployError


def ctx(name: str) -> Any:
    return lambda cmd: name if cmd[:3] == ["kubectl", "config", "current-context"] else ""


def test_cluster_detection() -> None:
    assert deploy.detect_cluster({}, ctx("kind-dev")) == ("kind", "dev")
    assert deploy.detect_cluster({}, ctx("minikube")) == ("minikube", "minikube")
    assert deploy.detect_cluster({"CLUSTER": "kind"}, ctx("")) == ("kind", "kind")
    assert deploy.detect_cluster({"CLUSTER": "minikube", "MINIKUBE_PROFILE": "p"}, ctx("")) == (
        "minikube",
        "p",
    )
    with pytest.raises(DeployError, match="kind create cluster"):
        deploy.detect_cluster({}, ctx("gke_prod"))
    with pytest.raises(DeployError, match="use kind or minikube"):
        deploy.detect_cluster({"CLUSTER": "k3s"}, ctx(""))


def test_images_are_loaded_as_archives() -> None:
    tar = Path("/tmp/x.tar")
    assert deploy.load_command("kind", "dev", tar) == [
        "kind",
        "load",
        "image-archive",
        "/tmp/x.tar",
        "--name",
        "dev",
    ]
    assert deploy.load_command("minikube", "minikube", tar)[:3] == ["minikube", "image", "load"]


def dep(
    replicas: int, generation: int, observed: int, updated: int, available: int, total: int
) -> Any:
    return SimpleNamespace(
        spec=SimpleNamespace(replicas=replicas),
        metadata=SimpleNamespace(generation=generation),
        status=SimpleNamespace(
            observed_generation=observed,
            updated_replicas=updated,
            available_replicas=available,
            replicas=total,
        ),
    )


def test_rollout_is_done_only_when_every_new_replica_is_available() -> None:
    assert deploy.rollout_done(dep(2, 3, 3, 2, 2, 2))[0]
    assert not deploy.rollout_done(dep(2, 3, 2, 2, 2, 2))[0], "old generation observed"
    assert not deploy.rollout_done(dep(2, 3, 3, 1, 2, 3))[0], "old pods still there"
    assert not deploy.rollout_done(dep(2, 3, 3, 2, 1, 2))[0], "a new pod not available"


class FakeApps:
    """Deployments that progress one step per read, as a controller would."""

    def __init__(self, states: dict[str, list[Any]]) -> None:
        self.states = states
        self.reads: list[str] = []

    def read_namespaced_deployment(self, name: str, namespace: str) -> Any:
        assert namespace == "ml-patterns"
        self.reads.append(name)
        seq = self.states[name]
        return seq.pop(0) if len(seq) > 1 else seq[0]


def test_wait_rollout_polls_until_done() -> None:
    api = FakeApps(
        {
            "a": [dep(2, 1, 0, 0, 0, 0), dep(2, 1, 1, 1, 0, 1), dep(2, 1, 1, 2, 2, 2)],
            "b": [dep(1, 1, 1, 1, 1, 1)],
        }
    )
    deploy.wait_rollout(api, ["a", "b"], timeout=60, sleep=lambda s: None)
    assert api.reads.count("a") == 3 and api.reads.count("b") == 1


def test_wait_rollout_names_what_is_stuck() -> None:
    api = FakeApps({"stuck": [dep(2, 1, 1, 1, 0, 2)]})
    with pytest.raises(DeployError, match="stuck"):
        deploy.wait_rollout(api, ["stuck"], timeout=0, sleep=lambda s: None)


@pytest.mark.slow  # renders with kubectl kustomize
def test_rendered_overlay_uses_the_built_tags() -> None:
    refs = {
        "serving": "localhost/mlsp-serving:abc",
        "model-in-image": "localhost/mlsp-model-in-image:iris-svc-v7-0123456789ab",
    }
    docs = deploy.rendered("model_in_image", refs)
    images = {
        c["image"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert images == {"localhost/mlsp-model-in-image:iris-svc-v7-0123456789ab"}
    # a digest instead of a tag works the same way (kustomize `images:` digest)
    digest = "sha256:" + "0" * 64
    pinned = f"localhost/mlsp-model-in-image@{digest}"
    docs = deploy.rendered("model_in_image", {"model-in-image": pinned})
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == pinned


@pytest.mark.slow  # renders with kubectl kustomize
def test_a_code_change_changes_the_pod_template_and_nothing_else_does() -> None:
    """A redeploy rolls the pods exactly when an image's content changed: the tag is the
    content, so the pod template differs; the same content renders the same template."""

    def template(tag: str) -> Any:
        refs = {"model-in-image": f"localhost/mlsp-model-in-image:iris-svc-v7-{tag}"}
        docs = deploy.rendered("model_in_image", refs)
        return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]

    assert template("0123456789ab") == template("0123456789ab")
    assert template("0123456789ab") != template("ba9876543210")


def job(active: int = 0, succeeded: int = 0, failed: int = 0, cond: str | None = None) -> Any:
    conditions = [SimpleNamespace(type=cond, status="True")] if cond else None
    return SimpleNamespace(
        status=SimpleNamespace(
            active=active, succeeded=succeeded, failed=failed, conditions=conditions
        )
    )


class FakeBatch:
    def __init__(self, states: dict[str, list[Any]]) -> None:
        self.states = states

    def read_namespaced_job(self, name: str, namespace: str) -> Any:
        assert namespace == "ml-patterns"
        seq = self.states[name]
        return seq.pop(0) if len(seq) > 1 else seq[0]


def test_wait_jobs_until_complete_and_fails_fast_on_a_failed_job() -> None:
    # a pod failed once (retried with back-off, e.g. PostgreSQL not up yet): still running
    api = FakeBatch({"seed": [job(active=1), job(active=1, failed=1), job(1, 1, 1, "Complete")]})
    deploy.wait_jobs(api, ["seed"], timeout=60, sleep=lambda s: None)
    with pytest.raises(DeployError, match="logs job/seed"):
        deploy.wait_jobs(
            FakeBatch({"seed": [job(failed=7, cond="Failed")]}), ["seed"], 60, lambda s: None
        )
    with pytest.raises(DeployError, match="Job not done after"):
        deploy.wait_jobs(FakeBatch({"seed": [job(active=1)]}), ["seed"], 0, lambda s: None)


@pytest.mark.slow  # renders with kubectl kustomize
def test_init_steps_are_the_declared_init_processes() -> None:
    from kube import manifests

    batch = manifests.load(manifests.render("batch_inference"))
    assert deploy.init_steps("batch_inference", batch) == (
        ["batch-inference-seed"],
        ["batch-inference-score"],
    )
    cache = manifests.load(manifests.render("data_cache"))
    assert deploy.init_steps("data_cache", cache) == (
        ["data-cache-seed", "data-cache-warmup"],
        [],
    )
    sync = manifests.load(manifests.render("synchronous"))
    assert deploy.init_steps("synchronous", sync) == ([], [])  # the client is no init step


# --- undeploy keeps what another deployed pattern still uses ---------------------------------


def test_undeploy_plan_keeps_shared_objects_until_the_last_user_goes() -> None:
    rendered = {
        "asynchronous": {("Deployment", "asynchronous-api"), ("StatefulSet", "redis")},
        "sync_async": {("Deployment", "sync-async-proxy"), ("StatefulSet", "redis")},
        "web_single": {("Deployment", "web-single")},
    }
    both = {("Deployment", "asynchronous-api"), ("Deployment", "sync-async-proxy")}
    assert deploy.deployed_patterns(rendered, both | {("StatefulSet", "redis")}) == {
        "asynchronous",
        "sync_async",
    }
    delete, kept = deploy.undeploy_plan("asynchronous", rendered, both)
    assert delete == [("Deployment", "asynchronous-api")]
    assert kept == {("StatefulSet", "redis"): ["sync_async"]}
    # sync_async was undeployed before: Redis goes with its last user
    alone = {("Deployment", "asynchronous-api"), ("StatefulSet", "redis")}
    delete, kept = deploy.undeploy_plan("asynchronous", rendered, alone)
    assert delete == [("Deployment", "asynchronous-api"), ("StatefulSet", "redis")]
    assert kept == {}


def _items(*names: str) -> Any:
    return SimpleNamespace(items=[SimpleNamespace(metadata=SimpleNamespace(name=n)) for n in names])


class FakeCluster:
    """The Kubernetes API's list calls over what is deployed (apps/v1 and batch/v1)."""

    def __init__(self, present: dict[str, list[str]]) -> None:
        self.present = present

    def _list(self, kind: str, namespace: str, label_selector: str) -> Any:
        assert namespace == "ml-patterns"
        assert label_selector == "app.kubernetes.io/part-of=ml-system-patterns"
        return _items(*self.present.get(kind, []))

    def list_namespaced_deployment(self, namespace: str, label_selector: str) -> Any:
        return self._list("Deployment", namespace, label_selector)

    def list_namespaced_stateful_set(self, namespace: str, label_selector: str) -> Any:
        return self._list("StatefulSet", namespace, label_selector)

    def list_namespaced_job(self, namespace: str, label_selector: str) -> Any:
        return self._list("Job", namespace, label_selector)

    def list_namespaced_cron_job(self, namespace: str, label_selector: str) -> Any:
        return self._list("CronJob", namespace, label_selector)


@pytest.mark.slow  # renders every overlay with kubectl kustomize
@pytest.mark.parametrize(
    ("pattern", "other", "shared"),
    [
        ("asynchronous", "sync_async", {("StatefulSet", "redis"), ("Service", "redis")}),
        ("batch_inference", "data_cache", {("StatefulSet", "postgres"), ("Service", "postgres")}),
        ("prediction_cache", "data_cache", {("StatefulSet", "redis-cache")}),
    ],
)
def test_undeploy_keeps_the_components_another_deployed_pattern_uses(
    monkeypatch: pytest.MonkeyPatch, pattern: str, other: str, shared: set[tuple[str, str]]
) -> None:
    from kube import manifests

    docs = {o: manifests.load(manifests.render(o)) for o in (pattern, other)}
    workloads = {
        kind: [d["metadata"]["name"] for ds in docs.values() for d in ds if d["kind"] == kind]
        for kind in deploy.WORKLOADS
    }
    deleted: list[str] = []

    def kubectl_delete(gone: list[manifests.Doc]) -> None:
        deleted.extend(f"{d['kind']}/{d['metadata']['name']}" for d in gone)

    monkeypatch.setattr(deploy, "kubectl_delete", kubectl_delete)
    both = FakeCluster(workloads)
    gone = set(deploy.undeploy(pattern, both, both))
    assert shared <= deploy.objects(docs[pattern]) & deploy.objects(docs[other])
    assert not gone & shared, f"{sorted(gone & shared)} deleted while {other} uses them"
    own = {d for d in deploy.objects(docs[pattern]) if d[0] == "Deployment"}
    assert own <= gone and deleted and all(f"{k}/{n}" in deleted for k, n in own)
    # the other pattern gone too: the shared objects go with the last user
    mine = {kind: [n for n in names if (kind, n) in deploy.objects(docs[pattern])]
            for kind, names in workloads.items()}  # fmt: skip
    alone = FakeCluster(mine)
    assert shared <= set(deploy.undeploy(pattern, alone, alone))


class FakeCore:
    """CoreV1Api over Secrets, ConfigMaps and Pods held in dicts (manifest-shaped objects, as
    ApiClient.sanitize_for_serialization makes of the client's models)."""

    def __init__(self, secrets: dict[str, dict[str, str]], maps: list[str], pods: list[Any]):
        self.secrets, self.maps, self.pods = secrets, maps, pods
        self.deleted: list[str] = []

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        from kubernetes.client.exceptions import ApiException

        assert namespace == "ml-patterns"
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        return self.secrets[name]

    def create_namespaced_secret(self, namespace: str, body: Any) -> None:
        assert namespace == "ml-patterns" and body.metadata.name not in self.secrets
        self.secrets[body.metadata.name] = dict(body.string_data)

    def list_namespaced_config_map(self, namespace: str, label_selector: str) -> Any:
        assert label_selector == "ml-system-patterns/generated"
        return SimpleNamespace(items=[{"metadata": {"name": n}} for n in self.maps])

    def list_namespaced_pod(self, namespace: str) -> Any:
        return SimpleNamespace(items=models("pod", self.pods))

    def delete_namespaced_config_map(self, name: str, namespace: str) -> None:
        self.deleted.append(name)


@pytest.mark.slow  # renders an overlay with kubectl kustomize
def test_the_database_password_is_generated_once_and_never_replaced() -> None:
    import re

    from kube import manifests

    docs = manifests.load(manifests.render("batch_inference"))
    assert not [d for d in docs if d["kind"] == "Secret"], "a password rendered from git"
    assert deploy.secrets_used(docs) == {"postgres-credentials"}
    core = FakeCore({}, [], [])
    assert deploy.ensure_secrets(core, docs) == ["postgres-credentials"]
    first = core.secrets["postgres-credentials"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", first)  # URL-safe: it goes into a database URL
    assert deploy.ensure_secrets(core, docs) == []  # the volume was initialised with it
    assert core.secrets["postgres-credentials"]["POSTGRES_PASSWORD"] == first
    other = FakeCore({}, [], [])
    deploy.ensure_secrets(other, docs)
    assert other.secrets["postgres-credentials"]["POSTGRES_PASSWORD"] != first
    assert deploy.ensure_secrets(FakeCore({}, [], []), manifests.load(
        manifests.render("web_single"))) == []  # fmt: skip


MODELS = {"deployment": "V1Deployment", "replica_set": "V1ReplicaSet", "pod": "V1Pod"}


def models(kind: str, items: list[Any]) -> list[Any]:
    """The kubernetes client's own model objects, as the real API's list calls return them."""
    from kubernetes.client import ApiClient

    if kind not in MODELS:
        return items
    client = ApiClient()
    return [client.deserialize(json.dumps(i), MODELS[kind], "application/json") for i in items]


class FakeLists:
    """AppsV1Api/BatchV1Api list calls over the client's models of manifest objects."""

    def __init__(self, items: dict[str, list[Any]]) -> None:
        self.items = items

    def __getattr__(self, call: str) -> Any:
        kind = call.removeprefix("list_namespaced_")
        return lambda namespace, **kw: SimpleNamespace(items=models(kind, self.items.get(kind, [])))


@pytest.mark.slow  # renders an overlay with kubectl kustomize
def test_deploy_prunes_the_configmaps_of_older_revisions_nothing_reads() -> None:
    import copy

    from kube import manifests

    docs = manifests.load(manifests.render("serial"))
    current = next(d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap")
    assert manifests.GENERATED in next(d for d in docs if d["kind"] == "ConfigMap")[
        "metadata"]["labels"]  # fmt: skip
    proxy = next(
        d for d in docs if (d["kind"], d["metadata"]["name"]) == ("Deployment", "serial-proxy")
    )

    def reading(kind: str, config: str) -> Any:
        obj = copy.deepcopy(proxy)
        text = json.dumps(obj).replace(current, config)
        return {**json.loads(text), "kind": kind}

    old_rs = reading("ReplicaSet", "serial-config-old1")  # a rollback target: kept
    pod = {"metadata": {"name": "p"}, "spec": reading("Pod", "serial-config-pod1")["spec"][
        "template"]["spec"]}  # fmt: skip
    maps = [current, "serial-config-old1", "serial-config-pod1", "serial-config-gone"]
    core = FakeCore({}, maps, [pod])
    apps = FakeLists({"deployment": [proxy], "replica_set": [old_rs]})
    batch = FakeLists({})
    assert deploy.prune_configmaps(docs, apps, batch, core) == ["serial-config-gone"]
    assert core.deleted == ["serial-config-gone"]
    # the old ReplicaSet gone (revisionHistoryLimit): its ConfigMap goes at the next deploy
    core = FakeCore({}, maps, [])
    assert deploy.prune_configmaps(docs, FakeLists({"deployment": [proxy]}), batch, core) == [
        "serial-config-gone", "serial-config-old1", "serial-config-pod1"]  # fmt: skip
