"""deploy/: what the manifests set is what spendwatch reads, and the sink runs exactly once.

A misspelt ``SPENDWATCH_*`` variable is not an error at run time (the
process never looks it up), so a typo in a manifest would silently run with
a default; these tests read the files as the cluster would.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.settings import StreamSettings
from streams.sink_core import digest_timezone
from streams.sink_settings import SinkSettings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted(DEPLOY.rglob("*.yaml")) + sorted(DEPLOY.rglob("*.yml"))


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def spendwatch_names(node: Any) -> set[str]:
    """Every SPENDWATCH_* variable a parsed manifest sets: mapping keys and ``env`` entries' names."""
    if isinstance(node, dict):
        found = {k for k in node if isinstance(k, str) and k.startswith("SPENDWATCH_")}
        if isinstance(node.get("name"), str) and node["name"].startswith("SPENDWATCH_"):
            found.add(node["name"])
        return found.union(*(spendwatch_names(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(spendwatch_names(v) for v in node))
    return set()


def k8s(kind: str, name: str) -> dict[str, Any]:
    [found] = [d for path in DEPLOY.glob("k8s/*.yaml") for d in documents(path)
               if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_every_spendwatch_variable_the_deployment_sets_is_a_setting() -> None:
    names = set().union(*(spendwatch_names(d) for path in MANIFESTS for d in documents(path)))
    names |= set(re.findall(r"\b(SPENDWATCH_[A-Z_]+)=", (DEPLOY / "Dockerfile").read_text()))
    names -= {"SPENDWATCH_COMPILE"}  # read by setup.py when the image is built: a build option, not a setting
    settings = set(SinkSettings.model_fields)  # the sink's settings include every one of the worker's
    unknown = sorted(n for n in names if n.removeprefix("SPENDWATCH_").lower() not in settings)
    assert len(names) > 10 and unknown == []


def test_the_config_map_and_secret_load_as_the_workers_and_the_sinks_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**k8s("ConfigMap", "spendwatch")["data"], **k8s("Secret", "spendwatch")["stringData"]}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    worker, sink = StreamSettings(), SinkSettings()
    assert worker.partitions == sink.partitions == 12 and worker.store == "rocksdb://"
    assert sink.db_url.startswith("postgresql") and sink.slack_token is not None
    assert digest_timezone(sink).key == env["SPENDWATCH_DIGEST_TIMEZONE"]


def test_kubernetes_runs_one_sink_beside_the_workers_and_probes_ports_they_declare() -> None:
    sink, worker = k8s("StatefulSet", "spendwatch-sink"), k8s("StatefulSet", "spendwatch-worker")
    assert sink["spec"]["replicas"] == 1  # the single sender of alerts and writer of the history store
    assert [c["args"] for c in sink["spec"]["template"]["spec"]["containers"]] == [["sink"]]
    assert [c["args"] for c in worker["spec"]["template"]["spec"]["containers"]] == [["worker"]]
    for workload in (sink, worker):
        pod = workload["spec"]["template"]
        for container in pod["spec"]["containers"]:
            ports = {p["name"] for p in container["ports"]}
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ports
        [service] = [d for path in DEPLOY.glob("k8s/*.yaml") for d in documents(path)
                     if d["kind"] == "Service" and d["metadata"]["name"] == workload["spec"]["serviceName"]]
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()


def test_compose_runs_one_sink_beside_the_workers_and_prometheus_scrapes_both() -> None:
    [compose] = documents(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert services["worker"]["command"] == ["worker"] and services["sink"]["command"] == ["sink"]
    assert services["sink"].get("deploy", {}).get("replicas", 1) == 1
    [prometheus] = documents(DEPLOY / "prometheus.yml")
    scraped = {n for job in prometheus["scrape_configs"] for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert {"worker", "sink"} <= scraped
