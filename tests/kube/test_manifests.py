"""Every overlay renders, validates strictly against Kubernetes 1.32, meets the security
baseline and runs what the local runner runs; and each check catches what it is for."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from kube import check, images, manifests
from kube.manifests import Doc, pod_spec
from patterns import runner

# Rendering the overlays runs `kubectl kustomize`: not part of `make test-fast`.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {o: manifests.load(manifests.render(o)) for o in manifests.overlays()}


def all_errors(docs: list[Doc]) -> list[str]:
    """Every check that needs no pattern declaration."""
    return (
        manifests.schema_errors(docs)
        + manifests.semantic_errors(docs)
        + manifests.baseline_errors(docs)
    )


def test_every_pattern_with_a_finished_status_has_an_overlay() -> None:
    for pid in runner.pattern_ids():
        if runner.load(pid).status == "done":
            assert pid in manifests.overlays(), f"{pid} has no manifests/patterns/{pid}"


@pytest.mark.parametrize("overlay", manifests.overlays())
def test_overlay_is_valid(overlay: str) -> None:
    docs, errors = check.check_overlay(overlay)
    assert errors == []
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Deployment", "Service"} <= kinds
    assert all(
        d["metadata"].get("namespace") == "ml-patterns" for d in docs if d["kind"] != "Namespace"
    )


def test_release_objects_are_there(rendered: dict[str, list[Doc]]) -> None:
    mii = {d["kind"]: d for d in rendered["model_in_image"]}
    hpa = mii["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert mii["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    ml = rendered["model_load"]
    dep = next(d for d in ml if d["kind"] == "Deployment" and d["metadata"]["name"] == "model-load")
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    _, pod = pod_spec(dep)
    loader = pod["initContainers"][0]
    uri = next(e for e in loader["env"] if e["name"] == "MLSP_MODEL_URI")
    cm_name = uri["valueFrom"]["configMapKeyRef"]["name"]
    cm = next(d for d in ml if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name)
    assert cm["data"]["MLSP_MODEL_URI"] == "models:/iris-svc@production"
    assert {"PersistentVolumeClaim", "Job", "NetworkPolicy"} <= {d["kind"] for d in ml}
    api = pod["containers"][0]
    assert next(m for m in api["volumeMounts"] if m["name"] == "models")["readOnly"] is True


def _deployment(docs: list[Doc]) -> Doc:
    return next(d for d in docs if d["kind"] == "Deployment")


def _container(docs: list[Doc]) -> dict[str, Any]:
    return pod_spec(_deployment(docs))[1]["containers"][0]


Mutation = Callable[[list[Doc]], None]


def _writable_root(docs: list[Doc]) -> None:
    _container(docs)["securityContext"]["readOnlyRootFilesystem"] = False


def _no_limits(docs: list[Doc]) -> None:
    del _container(docs)["resources"]["limits"]


def _root_pod(docs: list[Doc]) -> None:
    pod_spec(_deployment(docs))[1]["securityContext"]["runAsUser"] = 0


def _no_readiness(docs: list[Doc]) -> None:
    del _container(docs)["readinessProbe"]


def _latest_tag(docs: list[Doc]) -> None:
    _container(docs)["image"] = "localhost/mlsp-serving:latest"


def _removed_api(docs: list[Doc]) -> None:
    pdb = next(d for d in docs if d["kind"] == "PodDisruptionBudget")
    pdb["apiVersion"] = "policy/v1beta1"


def _unknown_field(docs: list[Doc]) -> None:
    _container(docs)["imagePullPolicey"] = "Always"


def _service_misses(docs: list[Doc]) -> None:
    svc = next(d for d in docs if d["kind"] == "Service")
    svc["spec"]["selector"] = {"app.kubernetes.io/name": "nothing"}


def _port_mismatch(docs: list[Doc]) -> None:
    svc = next(d for d in docs if d["kind"] == "Service")
    svc["spec"]["ports"][0]["port"] = 80


def _hpa_dangling(docs: list[Doc]) -> None:
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    hpa["spec"]["scaleTargetRef"]["name"] = "gone"


def _no_pdb(docs: list[Doc]) -> None:
    docs[:] = [d for d in docs if d["kind"] != "PodDisruptionBudget"]


def _secret_in_env(docs: list[Doc]) -> None:
    _container(docs)["env"].append({"name": "DB_PASSWORD", "value": "hunter2"})


def _hpa_and_replicas(docs: list[Doc]) -> None:
    _deployment(docs)["spec"]["replicas"] = 2


def _default_account(docs: list[Doc]) -> None:
    del pod_spec(_deployment(docs))[1]["serviceAccountName"]


def _account_token(docs: list[Doc]) -> None:
    account = next(d for d in docs if d["kind"] == "ServiceAccount")
    account["automountServiceAccountToken"] = True


def _committed_secret(docs: list[Doc]) -> None:
    meta = {"name": "postgres-credentials", "namespace": manifests.NAMESPACE}
    docs.append({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {}})


def _plain_configmap(docs: list[Doc]) -> None:
    meta = {"name": "settings", "namespace": manifests.NAMESPACE}
    docs.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {}})


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_hpa_and_replicas, "owns its scale"),
        (_default_account, "serviceAccountName 'default'"),
        (_account_token, "automountServiceAccountToken must be false"),
        (_committed_secret, "values in git"),
        (_plain_configmap, "configMapGenerator"),
        (_writable_root, "readOnlyRootFilesystem"),
        (_no_limits, "limits"),
        (_root_pod, "runAsUser"),
        (_no_readiness, "readinessProbe"),
        (_latest_tag, "pinned tag"),
        (_removed_api, "removed or misspelled"),
        (_unknown_field, "imagePullPolicey"),
        (_service_misses, "matches no pods"),
        (_port_mismatch, "containerPort"),
        (_hpa_dangling, "scaleTargetRef"),
        (_no_pdb, "PodDisruptionBudget"),
        (_secret_in_env, "Secret"),
    ],
)
def test_each_check_catches_its_fault(
    rendered: dict[str, list[Doc]], mutate: Mutation, expected: str
) -> None:
    docs = copy.deepcopy(rendered["model_in_image"])
    assert not manifests.schema_errors(docs) + manifests.semantic_errors(docs)
    mutate(docs)
    errors = all_errors(docs)
    assert any(expected in e for e in errors), errors


def test_manifest_and_runner_must_agree(rendered: dict[str, list[Doc]]) -> None:
    pattern = runner.load("model_load")
    docs = copy.deepcopy(rendered["model_load"])
    assert manifests.declaration_errors(pattern, docs) == []
    dep = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "model-load"
    )
    _, pod = pod_spec(dep)
    pod["initContainers"][0]["env"].append({"name": "MLSP_EXTRA", "value": "1"})
    pod["containers"][0]["command"] = ["python", "-m", "patterns.web_single.app"]
    errors = manifests.declaration_errors(pattern, docs)
    assert any("MLSP_EXTRA" in e for e in errors)
    assert any("patterns.web_single.app" in e for e in errors)
    pod["containers"].append(pod["initContainers"].pop(0))
    assert any("declared init=True" in e for e in manifests.declaration_errors(pattern, docs))


# --- the queue, synchronous and batch patterns ----------------------------------------------


def _one(docs: list[Doc], kind: str, name: str | None = None) -> Doc:
    return next(
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    )


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def test_queue_patterns_have_a_durable_redis(rendered: dict[str, list[Doc]]) -> None:
    for overlay in ("asynchronous", "sync_async"):
        docs = rendered[overlay]
        sts = _one(docs, "StatefulSet", "redis")
        args = pod_spec(sts)[1]["containers"][0]["args"]
        assert args[args.index("--appendonly") + 1] == "yes"
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
        assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert _one(docs, "Service", "redis")["spec"]["clusterIP"] == "None"
        for dep in (d for d in docs if d["kind"] == "Deployment"):
            for c in pod_spec(dep)[1]["containers"]:
                if "MLSP_REDIS_URL" in _env(c):
                    assert _env(c)["MLSP_REDIS_URL"] == "redis://redis:6379/0"
    hpa = _one(rendered["asynchronous"], "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == "asynchronous-worker"
    assert hpa["apiVersion"] == "autoscaling/v2"


def test_models_are_baked_into_the_images_that_serve_them(rendered: dict[str, list[Doc]]) -> None:
    """Each container that reads a model runs the image with that model at MLSP_MODEL_DIR
    (but in a pod whose `serving.loader` init step fetches the model at start: model_load,
    inference_template)."""
    loader = ["python", "-m", "serving.loader"]
    for overlay, docs in rendered.items():
        for doc in docs:
            if doc["kind"] not in manifests.POD_OWNERS:
                continue
            pod = pod_spec(doc)[1]
            if any(c.get("command") == loader for c in pod.get("initContainers") or []):
                continue
            for _, c in manifests.containers(pod):
                model_dir = _env(c).get("MLSP_MODEL_DIR")
                if model_dir:
                    model = model_dir.rsplit("/", 1)[-1]
                    assert images.baked_model(c["image"]) == model, (overlay, c["name"])


def test_every_image_an_overlay_runs_is_built_for_it(rendered: dict[str, list[Doc]]) -> None:
    """make deploy / make verify build images_for(overlay): nothing else may be referenced."""
    for overlay, docs in rendered.items():
        planned = images.planned_repos(overlay)
        for doc in docs:
            if doc["kind"] in manifests.POD_OWNERS:
                for _, c in manifests.containers(pod_spec(doc)[1]):
                    assert images.repository(c["image"]) in planned, (overlay, c["image"])


def test_synchronous_client_is_a_job(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["synchronous"]
    job = _one(docs, "Job", "synchronous-client")
    client = pod_spec(job)[1]["containers"][0]
    assert _env(client)["MLSP_SERVER_URL"] == "http://synchronous:8000"
    assert pod_spec(job)[1]["restartPolicy"] == "Never"


def test_batch_runs_a_seed_job_a_forbid_cronjob_and_an_api(
    rendered: dict[str, list[Doc]],
) -> None:
    docs = rendered["batch_inference"]
    cron = _one(docs, "CronJob", "batch-inference-score")
    assert cron["apiVersion"] == "batch/v1"
    assert cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    assert _one(docs, "Job", "batch-inference-seed")
    assert not [d for d in docs if d["kind"] == "Secret"]  # made at deploy time, not in git
    for doc in docs:
        if doc["kind"] in {"Job", "CronJob", "Deployment"}:
            c = pod_spec(doc)[1]["containers"][0]
            env = _env(c)
            assert env["MLSP_DATABASE_URL"] == (
                "postgresql://mlsp:$(POSTGRES_PASSWORD)@postgres:5432/mlsp"
            )
            assert env["POSTGRES_PASSWORD"]["secretKeyRef"]["name"] in manifests.DEPLOY_TIME_SECRETS
    pg = _one(docs, "StatefulSet", "postgres")
    pg_env = _env(pod_spec(pg)[1]["containers"][0])
    assert pg_env["PGDATA"].startswith(
        pod_spec(pg)[1]["containers"][0]["volumeMounts"][0]["mountPath"]
    )


def _sts(docs: list[Doc]) -> Doc:
    return next(d for d in docs if d["kind"] == "StatefulSet")


def _cron(docs: list[Doc]) -> Doc:
    return next(d for d in docs if d["kind"] == "CronJob")


def _no_forbid(docs: list[Doc]) -> None:
    del _cron(docs)["spec"]["concurrencyPolicy"]


def _bad_schedule(docs: list[Doc]) -> None:
    _cron(docs)["spec"]["schedule"] = "hourly"


def _no_claims(docs: list[Doc]) -> None:
    sts = _sts(docs)
    del sts["spec"]["volumeClaimTemplates"]


def _unmounted_claim(docs: list[Doc]) -> None:
    pod_spec(_sts(docs))[1]["containers"][0]["volumeMounts"] = [
        m for m in pod_spec(_sts(docs))[1]["containers"][0]["volumeMounts"] if m["name"] != "data"
    ]


def _not_headless(docs: list[Doc]) -> None:
    svc = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "postgres")
    del svc["spec"]["clusterIP"]


def _no_fsgroup(docs: list[Doc]) -> None:
    del pod_spec(_sts(docs))[1]["securityContext"]["fsGroup"]


def _missing_secret_key(docs: list[Doc]) -> None:
    c = pod_spec(_cron(docs))[1]["containers"][0]
    next(e for e in c["env"] if e["name"] == "POSTGRES_PASSWORD")["valueFrom"]["secretKeyRef"][
        "key"
    ] = "PASSWORD"


def _password_defined_too_late(docs: list[Doc]) -> None:
    c = pod_spec(_cron(docs))[1]["containers"][0]
    c["env"].reverse()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_no_forbid, "concurrencyPolicy must be Forbid"),
        (_bad_schedule, "5-field cron"),
        (_no_claims, "needs volumeClaimTemplates"),
        (_unmounted_claim, "mounted nowhere"),
        (_not_headless, "headless"),
        (_no_fsgroup, "fsGroup"),
        (_missing_secret_key, "has no key 'PASSWORD'"),
        (_password_defined_too_late, "before it is defined"),
    ],
)
def test_each_stateful_and_batch_check_catches_its_fault(
    rendered: dict[str, list[Doc]], mutate: Mutation, expected: str
) -> None:
    docs = copy.deepcopy(rendered["batch_inference"])
    assert all_errors(docs) == []
    mutate(docs)
    errors = all_errors(docs)
    assert any(expected in e for e in errors), errors


def test_kube_kind_places_a_process_in_a_job_or_cronjob(rendered: dict[str, list[Doc]]) -> None:
    pattern = runner.load("batch_inference")
    docs = copy.deepcopy(rendered["batch_inference"])
    assert manifests.declaration_errors(pattern, docs) == []
    # the scorer declared as a CronJob may not run as a Deployment's container instead
    cron = _cron(docs)
    docs.remove(cron)
    api = _one(docs, "Deployment", "batch-inference-api")
    pod_spec(api)[1]["containers"].append(pod_spec(cron)[1]["containers"][0])
    errors = manifests.declaration_errors(pattern, docs)
    assert any("score is a main container of Deployment" in e and "CronJob" in e for e in errors)


def test_only_secret_parts_of_composed_values_may_be_extra_env(
    rendered: dict[str, list[Doc]],
) -> None:
    pattern = runner.load("batch_inference")
    docs = copy.deepcopy(rendered["batch_inference"])
    c = pod_spec(_one(docs, "Deployment", "batch-inference-api"))[1]["containers"][0]
    url = next(e for e in c["env"] if e["name"] == "MLSP_DATABASE_URL")
    # the password no longer used in the URL: then it is an undeclared variable
    url["value"] = "postgresql://mlsp@postgres:5432/mlsp"
    errors = manifests.declaration_errors(pattern, docs)
    assert any("manifest-only ['POSTGRES_PASSWORD']" in e for e in errors), errors
    # a plain value is never a secret part, even when used in $(...)
    url["value"] = "postgresql://mlsp:$(POSTGRES_PASSWORD)@postgres:5432/mlsp"
    pw = next(e for e in c["env"] if e["name"] == "POSTGRES_PASSWORD")
    pw.pop("valueFrom")
    pw["value"] = "x"
    errors = manifests.declaration_errors(pattern, docs)
    assert any("manifest-only ['POSTGRES_PASSWORD']" in e for e in errors), errors
    assert any("must come from a Secret" in e for e in manifests.baseline_errors(docs))


# --- the proxies, the caches -------------------------------------------------------------------


def _configmap_env(docs: list[Doc], container: dict[str, Any], name: str) -> str:
    ref = _env(container)[name]["configMapKeyRef"]
    return str(_one(docs, "ConfigMap", ref["name"])["data"][ref["key"]])


@pytest.mark.parametrize(
    ("overlay", "variable", "names"),
    [
        ("serial", "MLSP_STAGES", ["outlier", "classify"]),
        ("parallel", "MLSP_BACKENDS", ["setosa", "versicolor", "virginica"]),
    ],
)
def test_proxies_read_their_upstreams_from_a_configmap(
    rendered: dict[str, list[Doc]], overlay: str, variable: str, names: list[str]
) -> None:
    """Ordered stages (serial) and backends (parallel) in a ConfigMap, each pointing at the
    Service of the Deployment that runs it."""
    docs = rendered[overlay]
    proxy = pod_spec(_one(docs, "Deployment", f"{overlay}-proxy"))[1]["containers"][0]
    upstreams = json.loads(_configmap_env(docs, proxy, variable))
    assert [u["name"] for u in upstreams] == names
    for u in upstreams:
        svc = _one(docs, "Service", f"{overlay}-{u['name']}")
        assert u["url"] == f"http://{svc['metadata']['name']}:8000"
        assert 0 < u["timeout"] <= 1
        dep = _one(docs, "Deployment", f"{overlay}-{u['name']}")
        assert manifests.matches(svc["spec"]["selector"], pod_spec(dep)[0])
    if overlay == "serial":
        assert upstreams[0]["stop_below"] == 0.0
        assert all(u["on_error"] == "fail" for u in upstreams)
    else:
        assert _configmap_env(docs, proxy, "MLSP_AGGREGATION") == "require_all"


@pytest.mark.parametrize("overlay", ["prediction_cache", "data_cache"])
def test_caches_have_their_own_lru_redis(rendered: dict[str, list[Doc]], overlay: str) -> None:
    """A cache's Redis is not the queues' one: its own name and labels, and its ConfigMap sets
    maxmemory and allkeys-lru (no command-line option overrides them)."""
    docs = rendered[overlay]
    assert not [d for d in docs if d["metadata"]["name"] == "redis"]
    sts = _one(docs, "StatefulSet", "redis-cache")
    _, pod = pod_spec(sts)
    redis = pod["containers"][0]
    assert not any(a.startswith("--maxmemory") for a in redis["args"])
    mount = next(m for m in redis["volumeMounts"] if m["name"] == "config")
    assert redis["args"][0] == f"{mount['mountPath']}/redis.conf"
    volume = next(v for v in pod["volumes"] if v["name"] == "config")
    conf = _one(docs, "ConfigMap", volume["configMap"]["name"])["data"]["redis.conf"]
    settings = dict(ln.split(None, 1) for ln in conf.splitlines() if ln and ln[0] != "#")
    assert settings["maxmemory-policy"] == "allkeys-lru"
    assert settings["maxmemory"] == "400mb"  # below the 512Mi limit
    assert redis["resources"]["limits"]["memory"] == "512Mi"
    assert sts["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": "redis-cache"}
    svc = _one(docs, "Service", "redis-cache")
    assert svc["spec"]["clusterIP"] == "None"
    assert sts["spec"]["serviceName"] == "redis-cache"
    policy = _one(docs, "NetworkPolicy", f"{overlay.replace('_', '-')}-redis-cache-ingress")
    assert policy["spec"]["podSelector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    for doc in docs:
        if doc["kind"] in manifests.POD_OWNERS:
            for _, c in manifests.containers(pod_spec(doc)[1]):
                if "MLSP_REDIS_URL" in _env(c):
                    assert _env(c)["MLSP_REDIS_URL"] == "redis://redis-cache:6379/0"


def test_data_cache_warms_up_after_the_seed(rendered: dict[str, list[Doc]]) -> None:
    """One Job cannot wait for another: the warm-up pod runs the (idempotent) seed first."""
    docs = rendered["data_cache"]
    seed = pod_spec(_one(docs, "Job", "data-cache-seed"))[1]["containers"][0]
    _, warmup = pod_spec(_one(docs, "Job", "data-cache-warmup"))
    assert [c["name"] for c in warmup["initContainers"]] == ["seed"]
    assert warmup["initContainers"][0] == seed
    assert [c["name"] for c in warmup["containers"]] == ["warmup"]
    for doc in docs:
        if doc["kind"] in {"Job", "Deployment"} and doc["metadata"]["name"].startswith("data-"):
            for _, c in manifests.containers(pod_spec(doc)[1]):
                assert _env(c)["MLSP_DATABASE_URL"] == (
                    "postgresql://mlsp:$(POSTGRES_PASSWORD)@postgres:5432/mlsp"
                )


def test_no_two_workloads_share_a_service_account(rendered: dict[str, list[Doc]]) -> None:
    docs = copy.deepcopy(rendered["parallel"])
    accounts = [pod_spec(d)[1]["serviceAccountName"] for d in docs if d["kind"] == "Deployment"]
    assert len(set(accounts)) == len(accounts) == 4
    assert not manifests.service_account_errors(docs)
    workers = [d for d in docs if d["kind"] == "Deployment"][1:]
    for doc in workers:
        pod_spec(doc)[1]["serviceAccountName"] = accounts[0]
    errors = manifests.service_account_errors(docs)
    assert sum("shares ServiceAccount" in e for e in errors) == 3, errors


def test_an_autoscaled_workload_is_counted_at_its_minimum(rendered: dict[str, list[Doc]]) -> None:
    docs = rendered["asynchronous"]
    worker = _one(docs, "Deployment", "asynchronous-worker")
    api = _one(docs, "Deployment", "asynchronous-api")
    assert "replicas" not in worker["spec"]
    assert manifests.replicas(worker, docs) == 2  # the HPA's minReplicas (kube play runs 2)
    assert manifests.replicas(api, docs) == api["spec"]["replicas"]
