"""NetworkPolicy: default deny everywhere, and each Service admits exactly the callers the
pattern declares (the entry Service: anyone). Evaluated on the rendered overlays; every
breakage below must be caught."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest

from kube import manifests, netpol
from kube.manifests import Doc
from patterns import runner

pytestmark = pytest.mark.slow  # renders with kubectl kustomize


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {o: manifests.load(manifests.render(o)) for o in manifests.overlays()}


def _errors(overlay: str, docs: list[Doc]) -> list[str]:
    return netpol.network_errors(runner.load(overlay), docs)


@pytest.mark.parametrize("overlay", manifests.overlays())
def test_every_service_admits_exactly_its_declared_callers(
    rendered: dict[str, list[Doc]], overlay: str
) -> None:
    assert _errors(overlay, rendered[overlay]) == []


def test_the_callers_come_from_the_declarations(rendered: dict[str, list[Doc]]) -> None:
    calls = netpol.declared_calls
    assert calls(runner.load("sync_async"), rendered["sync_async"]) == {
        ("sync-async-proxy", "sync-async-fast"),  # {url:fast}
        ("sync-async-proxy", "redis"),  # {redis}
        ("sync-async-worker", "redis"),
    }
    assert calls(runner.load("serial"), rendered["serial"]) == {
        ("serial-proxy", "serial-outlier"),  # {url:outlier} in MLSP_STAGES
        ("serial-proxy", "serial-classify"),
    }
    assert calls(runner.load("data_cache"), rendered["data_cache"]) == {
        ("data-cache-seed", "postgres"),  # MLSP_DATABASE_URL
        ("data-cache-warmup", "postgres"),  # its seed initContainer and the warm-up
        ("data-cache-warmup", "redis-cache"),
        ("data-cache-api", "postgres"),
        ("data-cache-api", "redis-cache"),
    }
    assert calls(runner.load("model_load"), rendered["model_load"]) == {
        ("model-load", "mlflow"),  # the loader's {mlflow}
        ("train-register", "mlflow"),  # the component's own Job (its rendered env)
    }


def _policy(docs: list[Doc], name: str) -> Doc:
    return next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == name)


def _drop(name: str) -> Callable[[list[Doc]], None]:
    def mutate(docs: list[Doc]) -> None:
        docs.remove(_policy(docs, name))

    return mutate


def _every_project_pod(name: str) -> Callable[[list[Doc]], None]:
    """The old allow-list: every pod of the project may connect."""

    def mutate(docs: list[Doc]) -> None:
        rule = _policy(docs, name)["spec"]["ingress"][0]
        rule["from"] = [
            {"podSelector": {"matchLabels": {"app.kubernetes.io/part-of": "ml-system-patterns"}}}
        ]

    return mutate


def _no_dns(docs: list[Doc]) -> None:
    _policy(docs, "default-deny")["spec"]["egress"] = []


def _open_egress(docs: list[Doc]) -> None:
    _policy(docs, "serial-proxy-egress")["spec"]["egress"].append({})


def _entry_from_project_only(docs: list[Doc]) -> None:
    _policy(docs, "serial-entry")["spec"]["ingress"][0]["from"] = [{"podSelector": {}}]


BREAKAGES: list[tuple[str, str, Callable[[list[Doc]], None], str]] = [
    ("serial", "no allow-list for a stage", _drop("serial-outlier-ingress"), "cannot reach"),
    ("serial", "no egress for the proxy", _drop("serial-proxy-egress"), "egress of serial-proxy"),
    ("batch_inference", "no default deny", _drop("default-deny"), "no default-deny"),
    ("asynchronous", "Redis open to the project", _every_project_pod(
        "asynchronous-redis-ingress"), "an undeclared pod reaches Service redis"),
    ("data_cache", "PostgreSQL open to the project", _every_project_pod(
        "data-cache-postgres-ingress"), "an undeclared pod reaches Service postgres"),
    ("serial", "no DNS", _no_dns, "cannot reach DNS"),
    ("serial", "the proxy may call anything", _open_egress,
     "serial-proxy reaches another namespace"),
    ("serial", "clients outside cannot reach the entry", _entry_from_project_only,
     "another namespace cannot reach Service serial"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overlay", "mutation", "expected"),
    [(o, m, e) for o, _, m, e in BREAKAGES],
    ids=[what for _, what, _, _ in BREAKAGES],
)
def test_each_breakage_is_caught(
    rendered: dict[str, list[Doc]],
    overlay: str,
    mutation: Callable[[list[Doc]], None],
    expected: str,
) -> None:
    docs = copy.deepcopy(rendered[overlay])
    mutation(docs)
    errors = _errors(overlay, docs)
    assert any(expected in e for e in errors), errors


def test_the_evaluator_follows_the_networkpolicy_api() -> None:
    a, b = netpol.Pod.of({"app.kubernetes.io/name": "a"}), netpol.Pod.of({"x": "b"})
    assert netpol.connects([], a, b, 80), "no policy: open"
    deny: Doc = {"kind": "NetworkPolicy", "metadata": {"name": "d"},
                 "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}  # fmt: skip
    assert not netpol.connects([deny], a, b, 80)
    allow_in: Doc = {"kind": "NetworkPolicy", "metadata": {"name": "i"}, "spec": {
        "podSelector": {"matchLabels": {"x": "b"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "a"}}}],
                     "ports": [{"port": 80}]}]}}  # fmt: skip
    assert not netpol.connects([deny, allow_in], a, b, 80), "egress of a still denied"
    allow_out: Doc = {"kind": "NetworkPolicy", "metadata": {"name": "e"}, "spec": {
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"x": "b"}}}]}]}}  # fmt: skip
    assert netpol.connects([deny, allow_in, allow_out], a, b, 80)
    assert not netpol.connects([deny, allow_in, allow_out], a, b, 81), "other port"
    assert not netpol.connects([deny, allow_in, allow_out], b, a, 80), "other direction"
