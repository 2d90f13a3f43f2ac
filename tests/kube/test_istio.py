"""manifests/components/istio: the book's DestinationRule for circuit_breaker's primary, checked
against the structure stated here (Istio's CRD schema is not available offline), pointed at a
Service the overlay really has, and included by no overlay."""

from __future__ import annotations

import pytest
import yaml

from kube import manifests

COMPONENT = manifests.MANIFESTS / "components" / "istio"
EXPECTED_POLICY = {
    "connectionPool": {
        "tcp": {"maxConnections": 100},
        "http": {"http1MaxPendingRequests": 100, "maxRequestsPerConnection": 100},
    },
    "outlierDetection": {
        "consecutive5xxErrors": 100,
        "interval": "1s",
        "baseEjectionTime": "10m",
        "maxEjectionPercent": 100,
    },
}
"""The book's rule: pool 100/100/100; eject after 100 consecutive 5xx, every 1 s, for 10 min."""
DURATION_FIELDS = ("interval", "baseEjectionTime")


@pytest.mark.slow
def test_the_destination_rule_is_the_books_for_the_primary_service() -> None:
    (rule,) = manifests.load(manifests.render_component(COMPONENT.name))
    assert (rule["apiVersion"], rule["kind"]) == ("networking.istio.io/v1", "DestinationRule")
    assert rule["metadata"]["namespace"] == manifests.NAMESPACE
    assert set(rule["spec"]) == {"host", "trafficPolicy"}
    assert rule["spec"]["trafficPolicy"] == EXPECTED_POLICY
    overlay = manifests.load(manifests.render(manifests.MANIFESTS / "patterns" / "circuit_breaker"))
    services = {d["metadata"]["name"] for d in overlay if d["kind"] == "Service"}
    assert rule["spec"]["host"] in services - {"circuit-breaker"}  # the primary, not the entry


def test_durations_are_istio_durations_and_no_overlay_includes_the_component() -> None:
    (rule,) = [d for d in yaml.safe_load_all((COMPONENT / "destinationrule.yaml").read_text())]
    detection = rule["spec"]["trafficPolicy"]["outlierDetection"]
    for name in DURATION_FIELDS:  # a protobuf Duration: digits and a unit, no bare number
        value = detection[name]
        assert isinstance(value, str) and value[:-1].isdigit() and value[-1] in "smh", value
    assert "consecutiveErrors" not in detection  # the book's name, removed from the v1 API
    for kustomization in (manifests.MANIFESTS / "patterns").glob("*/kustomization.yaml"):
        text = kustomization.read_text()
        body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        assert "components/istio" not in body, kustomization
