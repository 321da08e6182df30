"""The deployment files describe the platform as it is: every service, its
database, the broker, the gateway, and the settings each program requires.
(No container engine runs here, so the files are checked, not started.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.localstack import ROOT, SERVICES
from services.kit.config import DEFAULT_PORTS

DEPLOY = ROOT / "deploy"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_compose_runs_every_program_with_its_database_and_the_broker() -> None:
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    assert {"nats", *SERVICES, "gateway", *(f"{s}-db" for s in SERVICES)} <= set(compose)
    for service in SERVICES:
        program = compose[service]
        assert program["command"] == ["python", "-m", f"services.{service}"]
        env = program["environment"]
        assert env[f"COCREATE_{service.upper()}_DATABASE_URL"].endswith(f"@{service}-db/cocreate")
        assert env["COCREATE_NATS_URL"] == "nats://nats:4222"
        assert env[f"COCREATE_{service.upper()}_ADDR"].endswith(f":{DEFAULT_PORTS[service]}")
    assert "-js" in compose["nats"]["command"]
    for service in SERVICES:
        assert compose["gateway"]["environment"][f"COCREATE_{service.upper()}_TARGET"] == (
            f"{service}:{DEFAULT_PORTS[service]}"
        )


def test_kubernetes_runs_replicas_against_a_jetstream_cluster_and_a_database_each() -> None:
    manifests = [d for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in documents(f)]
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in manifests:
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
        assert doc["metadata"].get("namespace", "cocreate") == "cocreate"

    nats = by_kind["StatefulSet"]["nats"]
    assert nats["spec"]["replicas"] == 3
    assert "jetstream" in by_kind["ConfigMap"]["nats-config"]["data"]["nats.conf"]

    for service in SERVICES:
        deployment = by_kind["Deployment"][service]
        assert deployment["spec"]["replicas"] >= 2
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{service}"]
        env = container_env(container)
        database = env[f"COCREATE_{service.upper()}_DATABASE_URL"]["secretKeyRef"]["name"]
        assert database == f"{service}-db-app"  # the CloudNativePG cluster's app secret
        assert f"{service}-db" in by_kind["Cluster"]
        assert env["COCREATE_STREAM_REPLICAS"] == "3"
        assert env["COCREATE_JWT_SECRET"]["secretKeyRef"]["name"] == "cocreate-jwt"
        port = DEFAULT_PORTS[service]
        assert container["readinessProbe"] == {"grpc": {"port": port}}
        assert by_kind["Service"][service]["spec"]["ports"][0]["port"] == port

    gateway = by_kind["Deployment"]["gateway"]["spec"]["template"]["spec"]["containers"][0]
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "cocreate-jwt" in by_kind["Secret"]


def test_deployments_run_in_production_mode_with_a_secret_they_must_be_given() -> None:
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    for service in SERVICES:
        env = compose[service]["environment"]
        assert env["COCREATE_ENV"] == "production"
        assert env["COCREATE_JWT_SECRET"].startswith("${COCREATE_JWT_SECRET:?")
    manifests = [d for f in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in documents(f)]
    deployments = {d["metadata"]["name"]: d for d in manifests if d["kind"] == "Deployment"}
    for service in SERVICES:
        [container] = deployments[service]["spec"]["template"]["spec"]["containers"]
        assert container_env(container)["COCREATE_ENV"] == "production"
    # No usable placeholder: a service refuses to start until the operator sets one.
    [secret] = [
        d for d in manifests if d["kind"] == "Secret" and d["metadata"]["name"] == "cocreate-jwt"
    ]
    assert secret["stringData"]["secret"] == ""
