"""kube play's preparation, without podman: what the kubelet would do that podman 4.3 does not
(Secret values, $(VAR) expansion), the start order, and which built image each container gets."""

from __future__ import annotations

from pathlib import Path

import pytest

from kube import manifests, play
from kube.manifests import Doc, pod_spec
from patterns import runner, smoke
from patterns.prep_pred.pattern import most_keep_their_label
from patterns.serial.pattern import gate_stops_outlier


def _docs(overlay: str) -> list[Doc]:
    return manifests.load(manifests.render(overlay))


def test_secrets_are_inlined_and_dependent_vars_expanded() -> None:
    secrets = {("pg", "PW"): "s3cret"}
    env = [
        {"name": "A", "value": "x$(PW)"},  # PW not defined yet: left as is
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "pg", "key": "PW"}}},
        {"name": "URL", "value": "postgresql://u:$(PW)@db/$(A)"},
        {"name": "ESC", "value": "$$(PW) $(NOPE)"},
    ]
    play.resolve_env(env, secrets)
    assert [e["value"] for e in env] == [
        "x$(PW)",
        "s3cret",
        "postgresql://u:s3cret@db/x$(PW)",
        "$(PW) $(NOPE)",
    ]
    assert all("valueFrom" not in e for e in env)


@pytest.mark.slow  # renders with kubectl kustomize
def test_played_batch_pods_get_the_database_url_the_kubelet_would_build(tmp_path: Path) -> None:
    docs = _docs("batch_inference")
    assert not [d for d in docs if d["kind"] == "Secret"]  # made at deploy time, not in git
    values = play.Player("batch_inference", docs, tmp_path).secrets
    password = values[("postgres-credentials", "POSTGRES_PASSWORD")]
    # a throwaway value per run, as make deploy makes one per namespace
    assert len(password) >= 32 and values != play.Player("batch_inference", docs, tmp_path).secrets
    cron = next(d for d in docs if d["kind"] == "CronJob")
    pod = play.fix_pod(pod_spec(cron)[1], values)
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["MLSP_DATABASE_URL"] == f"postgresql://mlsp:{password}@postgres:5432/mlsp"
    assert "ports" not in pod["containers"][0] and "readinessProbe" not in pod["containers"][0]


def _order(overlay: str) -> list[str]:
    docs = _docs(overlay)
    return [
        f"{d['kind']}/{d['metadata']['name']}" for d in play.play_order(docs, runner.load(overlay))
    ]


@pytest.mark.slow  # renders with kubectl kustomize
def test_start_order_follows_the_runner() -> None:
    # dependencies, then init steps in declaration order, then servers, then clients
    assert _order("batch_inference") == [
        "StatefulSet/postgres",
        "Job/batch-inference-seed",
        "CronJob/batch-inference-score",
        "Deployment/batch-inference-api",
    ]
    assert _order("synchronous") == ["Deployment/synchronous-server", "Job/synchronous-client"]
    assert _order("model_load") == [
        "Deployment/mlflow",
        "Job/train-register",
        "Deployment/model-load",
    ]
    # the warm-up Job runs the seed as an init container too: it ranks as the warm-up
    assert _order("data_cache") == [
        "StatefulSet/postgres",
        "StatefulSet/redis-cache",
        "Job/data-cache-seed",
        "Job/data-cache-warmup",
        "Deployment/data-cache-api",
    ]
    assert _order("sync_async") == [
        "StatefulSet/redis",
        "Deployment/sync-async-fast",
        "Deployment/sync-async-worker",
        "Deployment/sync-async-proxy",
    ]


@pytest.mark.slow  # renders with kubectl kustomize
def test_each_container_gets_the_built_image_of_its_model() -> None:
    """kustomize `images:` matches by repository: two models in one overlay (sync_async's
    fast and worker) need two repositories to get their own built tags."""
    built = {
        "serving": "localhost/mlsp-serving:0.1.0-aaaaaaaaaaaa",
        "redis": "localhost/mlsp-redis:7.0-bbbbbbbbbbbb",
        "model-in-image:digits-lr": "localhost/mlsp-model-in-image-digits-lr:digits-lr-v3-cc",
        "model-in-image:digits-svc": "localhost/mlsp-model-in-image-digits-svc:digits-svc-v7-dd",
    }
    images = {
        c["name"]: c["image"]
        for d in manifests.load(manifests.render("sync_async", built))
        if d["kind"] in {"Deployment", "StatefulSet"}
        for c in pod_spec(d)[1]["containers"]
    }
    assert images == {
        "proxy": built["serving"],
        "fast": built["model-in-image:digits-lr"],
        "worker": built["model-in-image:digits-svc"],
        "redis": built["redis"],
    }


def test_judging_answers() -> None:
    ok, _ = smoke.job_done(
        {
            "status": 202,
            "ticket": {"job_id": "x"},
            "expected": ["1", "7"],
            "final": {
                "status": "done",
                "result": {"predictions": [{"label": "1"}, {"label": "7"}]},
            },
        },
    )
    assert ok
    bad, detail = smoke.same_labels(
        {"status": 200, "body": {"predictions": [{"label": "3"}]}, "expected": ["8"]}
    )
    assert not bad and "expected ['8']" in detail


def test_judging_the_proxies_and_caches() -> None:
    answer = {
        "status": 200,
        "expected": ["setosa", "unknown"],
        "body": {
            "predictions": [{"label": "setosa"}, {"label": "unknown"}],
            "stages": [{"name": "outlier", "rows": 2}, {"name": "classify", "rows": 1}],
        },
    }
    ok, detail = gate_stops_outlier(answer)
    assert ok, detail
    # the outlier went on to stage 2: the gate did not stop it
    answer["body"]["stages"][1]["rows"] = 2  # type: ignore[index]
    assert not gate_stops_outlier(answer)[0]
    images = [{"status": 200, "label": x} for x in ("4", "4", "2", "0", "3")]
    ok, detail = most_keep_their_label({"answers": images, "expected": ["1", "4", "2", "0", "3"]})
    assert ok and "4 of 5" in detail
    images[2] = {"status": 503, "label": None}
    assert not most_keep_their_label({"answers": images, "expected": ["1", "4", "2", "0", "3"]})[0]
    hit = {"status": 200, "x_cache": "HIT", "sent": {}, "expect": {"status": 200, "x_cache": "HIT"}}
    assert smoke.as_expected({"answers": [hit]})[0]
    miss = {**hit, "x_cache": "MISS"}
    ok, detail = smoke.as_expected({"answers": [hit, miss]})
    assert not ok and "MISS" in detail
    assert not smoke.as_expected({"answers": []})[0]


@pytest.mark.slow  # renders with kubectl kustomize
def test_redis_memory_settings_of_queues_and_caches() -> None:
    """What kube play compares with the running Redis (CONFIG GET): queues never evict, caches
    evict LRU, both from the manifest (args for queues, the ConfigMap's redis.conf for caches)."""
    for overlay, policy in (("asynchronous", "noeviction"), ("prediction_cache", "allkeys-lru")):
        docs = _docs(overlay)
        sts = next(d for d in docs if d["kind"] == "StatefulSet")
        assert play.redis_memory(sts, docs) == {"maxmemory": "400mb", "maxmemory-policy": policy}
