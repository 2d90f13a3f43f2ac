"""Every overlay renders, validates strictly against Kubernetes 1.32, meets the security
baseline and runs what the local runner runs; and each check catches what it is for."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from kube import manifests
from kube.manifests import Doc, pod_spec
from patterns import runner


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {o: manifests.load(manifests.render(o)) for o in manifests.overlays()}


def test_every_pattern_with_a_finished_status_has_an_overlay() -> None:
    for pid in runner.pattern_ids():
        if runner.load(pid).status == "done":
            assert pid in manifests.overlays(), f"{pid} has no manifests/patterns/{pid}"


@pytest.mark.parametrize("overlay", manifests.overlays())
def test_overlay_is_valid(overlay: str) -> None:
    docs, errors = manifests.check_overlay(overlay)
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


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
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
    errors = (
        manifests.schema_errors(docs)
        + manifests.semantic_errors(docs)
        + manifests.baseline_errors(docs)
    )
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
