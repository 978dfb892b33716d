"""deploy/kubernetes/: what the schema check (.ci/check-kubernetes) cannot see. The
manifests agree with the image and the compose file (app, namespace, health port, graceful
stop), the probes ask the endpoints rexec serves, and the autoscalers scale the engine
Deployment on a metric the cockpit really exports. KEDA's ScaledObject is a custom
resource that kubernetes-validate has no schema for: its fields are checked here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from rexec import App
from rexec.prometheus import render_metrics

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "kubernetes"


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def find(kind: str, name: str) -> dict[str, Any]:
    for path in [*K8S.glob("*.yaml"), *K8S.glob("autoscaling/*.yaml")]:
        for doc in docs(path):
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name} in {K8S}")


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only  # type: ignore[no-any-return]


def env(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c["env"]}


def option(args: list[str], name: str, default: str) -> str:
    return args[args.index(name) + 1] if name in args else default


def test_engine_probes_stop_and_resources() -> None:
    engine = find("Deployment", "rexec-engine")
    c = container(engine)
    e = env(c)
    assert e["REXEC_REDIS_URL"] == {"secretKeyRef": {"name": "rexec-redis", "key": "url"}}
    assert e["REXEC_HEALTH_HOST"] == "0.0.0.0"  # the kubelet probes the pod's address
    (port,) = c["ports"]
    assert str(port["containerPort"]) == e["REXEC_HEALTH_PORT"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
    assert c["startupProbe"]["httpGet"] == {"path": "/livez", "port": port["name"]}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    # The node gives running jobs the shutdown timeout, then 10 s to stop its processes.
    shutdown = float(option(c["args"], "--shutdown-timeout", "30"))
    assert engine["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= shutdown + 10
    assert set(c["resources"]["requests"]) == {"cpu", "memory"}


def test_engine_and_cockpit_match_the_compose_cluster() -> None:
    compose = yaml.safe_load((REPO / "docker" / "compose.yaml").read_text())["services"]
    engine = container(find("Deployment", "rexec-engine"))
    assert engine["args"][:2] == compose["engine"]["command"][:2]  # worker, the same app
    assert env(engine)["REXEC_NAMESPACE"] == compose["engine"]["environment"]["REXEC_NAMESPACE"]
    cockpit = container(find("Deployment", "rexec-cockpit"))
    assert cockpit["args"] == compose["cockpit"]["command"]
    assert env(cockpit)["REXEC_COCKPIT_TOKEN"] == {
        "secretKeyRef": {"name": "rexec-cockpit", "key": "token"}
    }
    service = find("Service", "rexec-cockpit")
    labels = find("Deployment", "rexec-cockpit")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == cockpit["ports"][0]["name"]


def test_autoscalers_scale_the_engine_deployment() -> None:
    keda = find("ScaledObject", "rexec-engine")
    assert keda["apiVersion"] == "keda.sh/v1alpha1"
    spec = keda["spec"]
    assert spec["scaleTargetRef"] == {"name": "rexec-engine"}  # a Deployment by default
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "prometheus"
    assert set(trigger["metadata"]) >= {"serverAddress", "query", "threshold"}
    assert float(trigger["metadata"]["threshold"]) > 0
    hpa = find("HorizontalPodAutoscaler", "rexec-engine")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "rexec-engine")


def test_the_scaledobject_queries_a_metric_the_cockpit_exports(
    redis_url: str, namespace: str
) -> None:
    query = find("ScaledObject", "rexec-engine")["spec"]["triggers"][0]["metadata"]["query"]
    match = re.fullmatch(r"sum\((\w+)\{(.*)\}\)", query)
    assert match is not None, query
    metric, matchers = match.group(1), dict(re.findall(r'(\w+)="([^"]*)"', match.group(2)))
    engine = container(find("Deployment", "rexec-engine"))
    assert matchers == {"namespace": env(engine)["REXEC_NAMESPACE"], "state": "ready"}
    with App(redis_url, namespace=namespace) as app:
        app.enqueue_many([{"type": "k8s-scale-check"}] * 3)
        app.enqueue("k8s-scale-check", delay_ms=600_000)  # scheduled: not counted
        text = render_metrics(app).decode()
    ready = [
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == metric and s.labels == {**matchers, "namespace": namespace}
    ]
    assert ready == [3]
