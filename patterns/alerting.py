"""Prometheus and Alertmanager for a local run (`make run PATTERN=monitoring`) and the tests:
the Debian packages' own binaries (`apt-get install prometheus prometheus-alertmanager`),
started by the runner as dependencies of a pattern that declares them (`needs=`), as Redis
is. On Kubernetes the cluster's monitoring stack plays these parts (the pattern ships its
rules as a ConfigMap and as an optional PrometheusRule, see docs/kubernetes.md).

- alertmanager: one route to a webhook, `python -m patterns.alert_receiver` (started here
  too), which keeps every notification it gets (GET /alerts) and logs it as a JSON line.
- prometheus: scrapes /metrics of every process of the pattern that serves HTTP (job
  `mlsp`, label `process`), evaluates the pattern's alert rules
  (manifests/patterns/<id>/alerts.yaml) and sends alerts to the
  run's Alertmanager.

Intervals come from the environment so a test can make the loop take seconds:
MLSP_SCRAPE_INTERVAL (scrape and rule evaluation, default 5s) and MLSP_ALERT_GROUP_WAIT
(Alertmanager's wait before the first notification of a group, default 5s).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patterns.procs import RunnerError, answers, free_port
from patterns.procs import wait_ready as _wait
from patterns.supervisor import Stack

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Context:
    """What a dependency can know when the runner starts it: the pattern, the URL each of its
    processes will listen on, and the dependencies started before it."""

    pattern: str
    urls: Mapping[str, str]
    deps: Mapping[str, str]


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RunnerError(f"{name} is not installed: `apt-get install {package}`")
    return found


def rules_file(pattern: str) -> Path | None:
    """The pattern's alert rules: the file its overlay makes a ConfigMap of (kustomize reads
    files only from under the overlay, so that is where the one copy lives)."""
    path = ROOT / "manifests" / "patterns" / pattern / "alerts.yaml"
    return path if path.is_file() else None


def prometheus_config(
    targets: Mapping[str, str], alertmanager: str | None, rules: Path | None, interval: str
) -> dict[str, Any]:
    """prometheus.yml: one scrape job over `targets` ({process: host:port}), the pattern's
    rule file, and the Alertmanager to notify."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {
                "job_name": "mlsp",
                "static_configs": [
                    {"targets": [hostport], "labels": {"process": name}}
                    for name, hostport in sorted(targets.items())
                ],
            }
        ],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    if alertmanager:
        hostport = alertmanager.removeprefix("http://").rstrip("/")
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [hostport]}]}]}
    return config


def alertmanager_config(webhook: str, group_wait: str) -> dict[str, Any]:
    """alertmanager.yml: every alert to one webhook, grouped by alert name and feature."""
    return {
        "route": {
            "receiver": "webhook",
            "group_by": ["alertname", "feature"],
            "group_wait": group_wait,
            "group_interval": "1m",
            "repeat_interval": "4h",
        },
        "receivers": [
            {"name": "webhook", "webhook_configs": [{"url": webhook, "send_resolved": True}]}
        ],
    }


def _write(stack: Stack, name: str, config: dict[str, Any]) -> Path:
    folder = stack.workdir / name
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yml"
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML: no YAML writer needed
    return path


def _start(
    stack: Stack, name: str, cmd: list[str], env: Mapping[str, str], url: str, ready: str
) -> None:
    """Spawn one process of the run (log in the run's folder) and wait until GET url+ready
    answers 200; a process that exits first is an error with its log's tail."""
    log = stack.workdir / f"{name}.log"
    proc = stack.spawn(name, cmd, env, log, url=url)
    _wait(lambda: answers(f"{url}{ready}"), name, 60, proc, log)


def ensure_alertmanager(stack: Stack, _data: Path, ctx: Context) -> str:
    """The run's Alertmanager (and the webhook receiver it notifies); returns its URL."""
    exe = binary("prometheus-alertmanager", "prometheus-alertmanager")
    receiver_port, port = free_port(), free_port()
    receiver = f"http://127.0.0.1:{receiver_port}"
    env = {**os.environ, "MLSP_PORT": str(receiver_port), "MLSP_HOST": "127.0.0.1"}
    env |= {"MLSP_SERVICE": "alert-receiver", "MLSP_PATTERN": ctx.pattern}
    _start(stack, "alert-receiver", [sys.executable, "-m", "patterns.alert_receiver"], env,
           receiver, "/readyz")  # fmt: skip
    group_wait = os.environ.get("MLSP_ALERT_GROUP_WAIT", "5s")
    config = _write(stack, "alertmanager", alertmanager_config(f"{receiver}/alerts", group_wait))
    url = f"http://127.0.0.1:{port}"
    cmd = [exe, f"--config.file={config}", f"--storage.path={config.parent}"]
    # a single instance: no gossip port (its default, 9094, may be taken; nothing to peer with)
    cmd += [f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    _start(stack, "alertmanager", cmd, os.environ, url, "/-/ready")
    stack.say(f"alertmanager: {url} (notifies {receiver}/alerts; GET it to see what arrived)")
    return url


def ensure_prometheus(stack: Stack, _data: Path, ctx: Context) -> str:
    """The run's Prometheus over the pattern's processes; returns its URL (the UI)."""
    exe = binary("prometheus", "prometheus")
    targets = {name: url.removeprefix("http://") for name, url in ctx.urls.items()}
    interval = os.environ.get("MLSP_SCRAPE_INTERVAL", "5s")
    config = prometheus_config(
        targets, ctx.deps.get("alertmanager"), rules_file(ctx.pattern), interval
    )
    path = _write(stack, "prometheus", config)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [exe, f"--config.file={path}", f"--storage.tsdb.path={path.parent / 'data'}"]
    cmd += [f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1d"]
    _start(stack, "prometheus", cmd, os.environ, url, "/-/ready")
    stack.say(f"prometheus: {url} (UI; alerts at {url}/alerts, scraping {len(targets)} processes)")
    return url
