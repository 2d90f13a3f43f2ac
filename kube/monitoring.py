"""The monitoring objects that are not Kubernetes core: the PrometheusRule of the optional
component manifests/components/prometheus-rule (made from the overlay's rule file, so there
is one copy of each rule) and the Grafana dashboard of manifests/components/grafana-dashboard
(checked, since Grafana is not here to load it).

    python -m kube rules     write the PrometheusRule from manifests/patterns/*/alerts.yaml
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import yaml

from kube.manifests import MANIFESTS, Doc

RULES = MANIFESTS / "patterns" / "prediction_monitoring" / "alerts.yaml"
PROMETHEUS_RULE = MANIFESTS / "components" / "prometheus-rule" / "prometheusrule.yaml"
DASHBOARD = MANIFESTS / "components" / "grafana-dashboard" / "ml-system-patterns.json"
HEADER = (
    "# Written by `python -m kube rules` from manifests/patterns/prediction_monitoring/"
    "alerts.yaml:\n# edit that file, then rerun (tests/kube/test_monitoring.py compares them).\n"
)


def prometheus_rule(rules: Path = RULES) -> Doc:
    """The rule file's groups as a prometheus-operator PrometheusRule."""
    groups = yaml.safe_load(rules.read_text())["groups"]
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "prediction-monitoring",
            "labels": {"app.kubernetes.io/name": "prediction-monitoring"},
        },
        "spec": {"groups": groups},
    }


def rule_text(rules: Path = RULES) -> str:
    return HEADER + yaml.safe_dump(prometheus_rule(rules), sort_keys=False, width=100)


def write_rules() -> Path:
    PROMETHEUS_RULE.write_text(rule_text())
    return PROMETHEUS_RULE


# --- the Grafana dashboard ------------------------------------------------------------------

PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "table", "bargauge", "text"}
GRID_WIDTH = 24
TEMPLATE_VALUES = {"$__rate_interval": "5m", "$__interval": "1m", "$service": ".*"}
"""What Grafana puts in place of its variables, for checking a query without Grafana."""
METRIC = re.compile(r"\b(mlsp_[a-z0-9_]+)")


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard.get("panels") or []:
        out.append(panel)
        out.extend(panel.get("panels") or [])  # a collapsed row holds its panels
    return out


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, Grafana's variables filled in."""
    found = []
    for panel in _panels(dashboard):
        for target in panel.get("targets") or []:
            expr = str(target.get("expr", ""))
            for name, value in TEMPLATE_VALUES.items():
                expr = expr.replace(name, value)
            found.append((str(panel.get("title")), expr))
    return found


def panel_errors(panel: dict[str, Any]) -> list[str]:
    """A panel: a known type, a place on the 24-column grid, and (unless a row) a Prometheus
    data source through the ${datasource} variable and targets with unique refIds and an
    expression each."""
    where = f"panel {panel.get('id')} {panel.get('title')!r}"
    errors = []
    if panel.get("type") not in PANEL_TYPES:
        errors.append(f"{where}: unknown type {panel.get('type')!r}")
    grid = panel.get("gridPos") or {}
    if not all(isinstance(grid.get(k), int) for k in ("h", "w", "x", "y")):
        errors.append(f"{where}: gridPos needs integer h, w, x, y")
    elif grid["x"] + grid["w"] > GRID_WIDTH:
        errors.append(f"{where}: wider than the grid")
    if panel.get("type") == "row":
        return errors
    if (panel.get("datasource") or {}).get("uid") != "${datasource}":
        errors.append(f"{where}: data source is not ${{datasource}}")
    targets = panel.get("targets") or []
    refs = [t.get("refId") for t in targets]
    if not refs or len(set(refs)) != len(refs):
        errors.append(f"{where}: targets missing or refIds not unique")
    if any(not str(t.get("expr", "")).strip() for t in targets):
        errors.append(f"{where}: a target without an expression")
    return errors


def structure_errors(dashboard: dict[str, Any]) -> list[str]:
    """What Grafana's dashboard model needs: a title, a uid, a schema version, a Prometheus
    data source variable, and panels with unique ids (panel_errors for each)."""
    errors = [f"missing {key}" for key in ("title", "uid", "schemaVersion") if key not in dashboard]
    if int(dashboard.get("schemaVersion") or 0) < 36:
        errors.append("schemaVersion below 36 (Grafana 9)")
    variables = {v.get("name"): v for v in (dashboard.get("templating") or {}).get("list") or []}
    if (variables.get("datasource") or {}).get("query") != "prometheus":
        errors.append("no `datasource` variable of type prometheus")
    ids = [panel.get("id") for panel in _panels(dashboard)]
    if len(set(ids)) != len(ids) or not all(isinstance(i, int) for i in ids):
        errors.append(f"panel ids missing or not unique: {ids}")
    for panel in _panels(dashboard):
        errors += panel_errors(panel)
    return errors


def _promtool_accepts(tool: str, folder: Path, exprs: list[str]) -> tuple[bool, str]:
    rules = [{"record": f"dashboard:q{i}", "expr": expr} for i, expr in enumerate(exprs)]
    path = folder / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run(
        [tool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    return done.returncode == 0, (done.stdout + done.stderr).strip()[-300:]


def promql_errors(exprs: list[tuple[str, str]], promtool: str | None = None) -> list[str]:
    """Parse every query with promtool, as recording rules of a scratch rule file (promtool
    checks PromQL with Prometheus' own parser and needs no server); when the file fails, each
    query again on its own, to name the ones at fault."""
    tool = promtool or shutil.which("promtool")
    if tool is None:
        return ["promtool is missing: apt-get install prometheus"]
    with tempfile.TemporaryDirectory(prefix="mlsp-dashboard-") as tmp:
        ok, _ = _promtool_accepts(tool, Path(tmp), [expr for _, expr in exprs])
        if ok:
            return []
        errors = []
        for title, expr in exprs:
            ok, why = _promtool_accepts(tool, Path(tmp), [expr])
            if not ok:
                errors.append(f"{title!r}: {expr}: {why}")
        return errors or ["promtool refused the queries together, each alone passes"]


def metric_errors(exprs: list[tuple[str, str]], exported: set[str]) -> list[str]:
    """Every mlsp_ metric a query names is one the project exports (`exported`: the sample
    names of the registry, counters' _total and histograms' _bucket included)."""
    return [
        f"{title!r}: {name} is exported by no service"
        for title, expr in exprs
        for name in METRIC.findall(expr)
        if name not in exported
    ]


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data
