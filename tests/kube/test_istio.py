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


# The book's mesh objects for the quality chapter's traffic patterns, one optional component
# each (no overlay includes them: the project's proxies carry the mechanism), and the Gateway
# API form of condition_based's header and query rules.
MESH = {
    "istio-shadow-ab": "shadow_ab",
    "istio-online-ab": "online_ab",
    "istio-condition-based": "condition_based",
    "gateway-api-condition-based": "condition_based",
}


def services_of(pattern: str) -> set[str]:
    overlay = manifests.load(manifests.render(manifests.MANIFESTS / "patterns" / pattern))
    return {d["metadata"]["name"] for d in overlay if d["kind"] == "Service"}


def hosts(doc: dict) -> set[str]:
    """Every Service a VirtualService or HTTPRoute names."""
    found: set[str] = set()
    spec = doc["spec"]
    found |= set(spec.get("hosts") or [])
    for rule in spec.get("http") or []:
        for route in rule.get("route") or []:
            found.add(route["destination"]["host"])
        if "mirror" in rule:
            found.add(rule["mirror"]["host"])
    for rule in spec.get("rules") or []:
        found |= {ref["name"] for ref in rule.get("backendRefs") or []}
    return found


@pytest.mark.slow
@pytest.mark.parametrize("component", sorted(MESH))
def test_each_mesh_object_names_services_its_overlay_has(component: str) -> None:
    (doc,) = manifests.load(manifests.render_component(component))
    assert doc["metadata"]["namespace"] == manifests.NAMESPACE
    assert hosts(doc) <= services_of(MESH[component]), hosts(doc) - services_of(MESH[component])


def test_the_mesh_objects_are_the_books() -> None:
    def one(component: str, name: str) -> dict:
        (doc,) = yaml.safe_load_all(
            (manifests.MANIFESTS / "components" / component / name).read_text()
        )
        return doc

    shadow = one("istio-shadow-ab", "virtualservice.yaml")
    assert shadow["apiVersion"] == "networking.istio.io/v1"
    (rule,) = shadow["spec"]["http"]
    assert rule["mirror"]["host"] == "shadow-ab-shadow" and rule["mirrorPercentage"]["value"] == 100
    ab = one("istio-online-ab", "virtualservice.yaml")
    (split,) = ab["spec"]["http"]
    assert [r["weight"] for r in split["route"]] == [60, 40]  # the book's split
    condition = one("istio-condition-based", "virtualservice.yaml")
    first = condition["spec"]["http"][0]
    assert first["match"][0]["headers"] == {"x-target": {"exact": "mountain"}}
    # the HTTPRoute mirrors routes.yaml's header and query rules, in order, then the default
    routes = yaml.safe_load(
        (manifests.MANIFESTS / "patterns/condition_based/routes.yaml").read_text()
    )
    route = one("gateway-api-condition-based", "httproute.yaml")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    expected = [
        (r["when"].get("header"), r["when"].get("query"), f"condition-based-{r['backend']}")
        for r in routes["rules"]
        if r.get("when", {}).get("header") or r.get("when", {}).get("query")
    ]
    got = [
        (
            {h["name"]: h["value"] for h in r["matches"][0].get("headers", [])} or None,
            {q["name"]: q["value"] for q in r["matches"][0].get("queryParams", [])} or None,
            r["backendRefs"][0]["name"],
        )
        for r in route["spec"]["rules"]
        if r.get("matches")
    ]
    assert got == expected
    default = route["spec"]["rules"][-1]
    assert "matches" not in default
    assert default["backendRefs"][0]["name"] == f"condition-based-{routes['rules'][-1]['backend']}"
    for kustomization in (manifests.MANIFESTS / "patterns").glob("*/kustomization.yaml"):
        body = "\n".join(line.split("#", 1)[0] for line in kustomization.read_text().splitlines())
        assert not any(f"components/{c}" in body for c in MESH), kustomization
