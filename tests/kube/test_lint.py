"""checkov, the independent linter, agrees with kube/manifests.py on every overlay, and does
fail on what it is there to catch (it is not a linter that passes everything)."""

from __future__ import annotations

import copy

import pytest

from kube import lint, manifests
from kube.manifests import Doc, pod_spec

# runs kubectl kustomize and checkov (~10 s): not part of `make test-fast`
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Doc]]:
    return {o: manifests.load(manifests.render(o)) for o in manifests.overlays()}


def test_every_overlay_passes_checkov(rendered: dict[str, list[Doc]]) -> None:
    result = lint.run(rendered)
    assert result.findings == []
    # the run looked at every object: a parse that silently saw nothing would pass too
    objects = sum(len(docs) for docs in rendered.values())
    assert result.resources >= objects - len(rendered)  # Namespace aside, counted per file
    assert result.passed > 20 * len(rendered)


def test_checkov_fails_a_workload_that_breaks_the_baseline(rendered: dict[str, list[Doc]]) -> None:
    docs = copy.deepcopy(rendered["web_single"])
    dep = next(d for d in docs if d["kind"] == "Deployment")
    pod = pod_spec(dep)[1]
    pod["automountServiceAccountToken"] = True
    pod["hostNetwork"] = True
    container = pod["containers"][0]
    container["securityContext"]["privileged"] = True
    container["securityContext"]["allowPrivilegeEscalation"] = True
    del container["livenessProbe"]
    found = {f.check_id for f in lint.run({"web_single": docs}).findings}
    # privileged, privilege escalation, host network, liveness probe, service account token
    assert {"CKV_K8S_16", "CKV_K8S_20", "CKV_K8S_19", "CKV_K8S_8", "CKV_K8S_38"} <= found, found
    assert not found & set(lint.SKIPS)
