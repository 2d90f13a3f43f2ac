"""The optional monitoring components: the PrometheusRule carries exactly the overlay's alert
rules (which promtool accepts), and the Grafana dashboard is a well-formed dashboard whose
every query parses with Prometheus' parser and names only metrics the project exports; each
check fails on the fault it is for."""

from __future__ import annotations

import copy
import importlib
import json
import pkgutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from kube import manifests, monitoring

# renders components with kubectl kustomize and runs promtool: not part of `make test-fast`
pytestmark = pytest.mark.slow

SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
    "gauge": ("",),
    "info": ("_info",),
}


def exported_metrics() -> set[str]:
    """The sample names of every metric a module of serving/ or patterns/ registers."""
    import patterns
    import serving

    for package in (serving, patterns):
        for mod in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            if not mod.name.endswith(("__main__", ".example", ".locustfile")):
                importlib.import_module(mod.name)
    names = set()
    for collector in list(REGISTRY._collector_to_names):  # every registered collector
        describe = getattr(collector, "describe", None)
        for family in describe() if describe else collector.collect():
            for suffix in SUFFIXES.get(family.type, ("",)):
                names.add(family.name + suffix)
    return {n for n in names if n.startswith("mlsp_")}


def test_the_prometheus_rule_is_the_overlays_rule_file(tmp_path: Path) -> None:
    assert monitoring.PROMETHEUS_RULE.read_text() == monitoring.rule_text(), (
        "stale: run `python -m kube rules`"
    )
    (rule,) = manifests.load(manifests.render_component("prometheus-rule"))
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["metadata"]["namespace"] == manifests.NAMESPACE
    groups = yaml.safe_load(monitoring.RULES.read_text())["groups"]
    assert rule["spec"]["groups"] == groups
    from tests.patterns.test_alerting import promtool

    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    checked = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert checked.returncode == 0 and "SUCCESS: 7 rules found" in checked.stdout


def test_the_dashboard_is_well_formed_and_every_query_is_real() -> None:
    dashboard = monitoring.load_dashboard()
    assert monitoring.structure_errors(dashboard) == []
    queries = monitoring.queries(dashboard)
    assert len(queries) >= 15
    assert monitoring.promql_errors(queries) == []
    exported = exported_metrics()
    assert {"mlsp_requests_total", "mlsp_drift_psi", "mlsp_outlier_rate"} <= exported
    assert monitoring.metric_errors(queries, exported) == []
    named = {m for _, q in queries for m in monitoring.METRIC.findall(q)}
    drift_and_latency = {
        "mlsp_drift_psi",
        "mlsp_drift_ks_pvalue",
        "mlsp_request_duration_seconds_bucket",
    }
    assert drift_and_latency <= named


def _mutated(change: Any) -> dict[str, Any]:
    dashboard = copy.deepcopy(monitoring.load_dashboard())
    change(dashboard)
    return dashboard


def _first_target(d: dict[str, Any]) -> dict[str, Any]:
    target: dict[str, Any] = next(p for p in d["panels"] if p.get("targets"))["targets"][0]
    return target


def test_each_dashboard_check_catches_its_fault() -> None:
    def duplicate_id(d: dict[str, Any]) -> None:
        d["panels"][2]["id"] = d["panels"][1]["id"]

    def off_grid(d: dict[str, Any]) -> None:
        d["panels"][1]["gridPos"]["x"] = 20

    def no_datasource(d: dict[str, Any]) -> None:
        d["panels"][1]["datasource"] = {"type": "prometheus", "uid": "prod-1234"}

    for change, expected in (
        (duplicate_id, "not unique"),
        (off_grid, "wider than the grid"),
        (no_datasource, "data source"),
    ):
        errors = monitoring.structure_errors(_mutated(change))
        assert any(expected in e for e in errors), (expected, errors)

    def broken(d: dict[str, Any]) -> None:
        _first_target(d)["expr"] = "sum by (service (rate(mlsp_requests_total[5m]))"

    errors = monitoring.promql_errors(monitoring.queries(_mutated(broken)))
    assert len(errors) == 1 and "mlsp_requests_total" in errors[0]

    def typo(d: dict[str, Any]) -> None:
        _first_target(d)["expr"] = "sum(rate(mlsp_request_total[5m]))"

    errors = monitoring.metric_errors(monitoring.queries(_mutated(typo)), exported_metrics())
    assert errors == ["'Requests per second by service and status': mlsp_request_total is "
                      "exported by no service"]  # fmt: skip


def test_the_dashboard_component_is_a_configmap_grafana_picks_up() -> None:
    (cm,) = manifests.load(manifests.render_component("grafana-dashboard"))
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["ml-system-patterns.json"]) == monitoring.load_dashboard()
