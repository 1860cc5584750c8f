"""deploy/kubernetes/: every manifest valid against the Kubernetes schemas in strict mode (kubernetes-validate,
offline: no cluster runs in the tests), and the parts agree with each other and with the server."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import kubernetes_validate
import pytest
import yaml

from smallguard.server.settings import Settings
from smallguard.server.transport.servicer import SERVICE_NAME
from tests.conftest import ROOT

KUBERNETES = ROOT / "deploy" / "kubernetes"
VERSION = "1.33.0"  # a release the manifests must stay valid for (the schemas of 1.33 and later)


def documents() -> list[dict[str, Any]]:
    return [doc for path in sorted(KUBERNETES.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def find(kind: str, name: str) -> dict[str, Any]:
    return next(doc for doc in documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


@pytest.mark.parametrize("version", [VERSION, kubernetes_validate.latest_version()])
def test_every_manifest_is_valid_in_strict_mode(version: str) -> None:
    kinds = set()
    for doc in documents():
        kubernetes_validate.validate(doc, version, strict=True)  # raises naming the path and the problem
        kinds.add(doc["kind"])
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap",
            "PersistentVolumeClaim"} <= kinds


def test_strict_validation_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(find("Deployment", "smallguard"))
    broken["spec"]["template"]["spec"]["contaners"] = broken["spec"]["template"]["spec"].pop("containers")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_the_deployment_probes_the_grpc_health_service_and_drains_within_its_grace() -> None:
    deployment = find("Deployment", "smallguard")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["grpc"] == int(env["SMALLGUARD_PORT"]) and ports["metrics"] == int(env["SMALLGUARD_METRICS_PORT"])
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"]
    assert "service" not in container["livenessProbe"]["grpc"]  # overall health
    assert container["readinessProbe"]["grpc"]["service"] == SERVICE_NAME  # NOT_SERVING on SIGTERM
    assert float(env["SMALLGUARD_DRAIN_SECONDS"]) + float(env["SMALLGUARD_GRACE_SECONDS"]) < \
        pod["terminationGracePeriodSeconds"]
    known = {field.metadata["env"] for field in dataclasses.fields(Settings)}
    assert {name for name in env if name.startswith("SMALLGUARD_")} <= known
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["models"] == env["SMALLGUARD_MODEL_REPOSITORY"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(ports["metrics"])


def test_services_budget_and_autoscaler_select_the_deployments_pods() -> None:
    labels = find("Deployment", "smallguard")["spec"]["template"]["metadata"]["labels"]
    for doc in documents():
        selector = None
        if doc["kind"] == "Service" and doc["metadata"]["name"].startswith("smallguard"):
            selector = doc["spec"]["selector"]
        elif doc["kind"] == "PodDisruptionBudget":
            selector = doc["spec"]["selector"]["matchLabels"]
        if selector is not None:
            assert selector.items() <= labels.items(), doc["metadata"]["name"]
    target = find("HorizontalPodAutoscaler", "smallguard")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "smallguard")


def test_the_collector_receives_what_the_pods_send() -> None:
    (container,) = find("Deployment", "smallguard")["spec"]["template"]["spec"]["containers"]
    endpoint = next(item["value"] for item in container["env"] if item["name"] == "OTEL_EXPORTER_OTLP_ENDPOINT")
    service = find("Service", "otel-collector")
    assert endpoint == f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    config = yaml.safe_load(find("ConfigMap", "otel-collector")["data"]["config.yaml"])
    assert config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    for name, pipeline in config["service"]["pipelines"].items():
        assert set(pipeline["receivers"]) <= set(config["receivers"]), name
        assert set(pipeline["exporters"]) <= set(config["exporters"]), name
        assert set(pipeline.get("processors", [])) <= set(config["processors"]), name
    assert {"traces", "metrics"} <= set(config["service"]["pipelines"])
