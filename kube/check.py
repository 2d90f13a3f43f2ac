"""Every check of an overlay in one call: the checks of kube/manifests.py (schema, semantics,
security baseline, the same processes as the local runner) and the NetworkPolicy evaluation
of kube/netpol.py, which builds on manifests.py's helpers (so this module, not manifests.py,
joins them)."""

from __future__ import annotations

from collections.abc import Mapping

from kube.manifests import (
    K8S_VERSION,
    Doc,
    baseline_errors,
    declaration_errors,
    load,
    render,
    schema_errors,
    semantic_errors,
)
from kube.netpol import network_errors
from patterns.runner import load as load_pattern


def check_overlay(
    overlay: str, version: str = K8S_VERSION, images: Mapping[str, str] | None = None
) -> tuple[list[Doc], list[str]]:
    """Render (with `images` set, see render) and run every check; returns (documents,
    errors)."""
    docs = load(render(overlay, images))
    errors = schema_errors(docs, version) + semantic_errors(docs) + baseline_errors(docs)
    pattern = load_pattern(overlay)
    errors += declaration_errors(pattern, docs) + network_errors(pattern, docs)
    return docs, errors
