"""The compose file describes the platform as it is: every service, its
database, the broker, the gateway, and the settings each program requires.
(No container engine runs here, so the file is checked, not started; the
Kubernetes manifests are checked in test_kubernetes.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.localstack import ROOT, SERVICES
from services.kit.config import DEFAULT_PORTS, ROLE_CALLS, ROLE_EVENTS

DEPLOY = ROOT / "deploy"


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


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


def test_compose_splits_the_votes_calls_from_its_event_work() -> None:
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    calls, events = compose["votes"], compose["votes-events"]
    assert calls["environment"]["COCREATE_ROLE"] == ROLE_CALLS
    assert events["environment"]["COCREATE_ROLE"] == ROLE_EVENTS
    assert events["command"] == calls["command"]
    for setting in ("COCREATE_VOTES_DATABASE_URL", "COCREATE_NATS_URL", "COCREATE_ENV"):
        assert events["environment"][setting] == calls["environment"][setting]
    # The gateway calls the process that answers calls.
    assert compose["gateway"]["environment"]["COCREATE_VOTES_TARGET"].startswith("votes:")


def test_compose_runs_in_production_mode_with_a_secret_it_must_be_given() -> None:
    compose = documents(DEPLOY / "compose.yaml")[0]["services"]
    for service in SERVICES:
        env = compose[service]["environment"]
        assert env["COCREATE_ENV"] == "production"
        assert env["COCREATE_JWT_SECRET"].startswith("${COCREATE_JWT_SECRET:?")
