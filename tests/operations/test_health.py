"""Health that means something: readiness (the overall status "" and each
named service) is NOT_SERVING while the service cannot reach its Postgres or
its NATS and SERVING again when it can; liveness ("liveness") stays SERVING
while the process runs; the gateway's /readyz follows the services' readiness
and its /healthz only the gateway itself.

This test owns its Postgres and nats-server (the session's are shared with
other tests, so they cannot be stopped) and stops and starts them on the same
port and data folder, as an operator's supervisor would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from cocreate.ops.v1 import dead_letter_service_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.localstack import LocalNats, LocalPostgres
from services.kit.readiness import LIVENESS
from services.kit.server import ServiceDefinition
from tests.conftest import start_on_a_free_port
from tests.operations.conftest import StartGateway
from tests.operations.prometheus import metrics_url, scrape
from tests.support import Platform, eventually, stub

BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)
DEAD_LETTERS = dead_letter_service_pb2.DESCRIPTOR.services_by_name["DeadLetterService"].full_name
# The overall status and each named service the bare service serves.
READINESS = ("", DEAD_LETTERS)
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[LocalPostgres, LocalNats]]:
    # Another test run on the machine may take a port between our look-up and
    # the server's bind: then another port is tried.
    postgres = start_on_a_free_port(
        lambda port: LocalPostgres(tmp_path / "pg", port, durable=False)
    )
    nats_server = start_on_a_free_port(
        lambda port: LocalNats(tmp_path / "js", port, sync_always=False)
    )
    yield postgres, nats_server
    nats_server.stop()
    postgres.stop()


@pytest.mark.timeout(240)
async def test_readiness_follows_postgres_and_nats_and_liveness_the_process(
    own_platform: Platform,
    own_servers: tuple[LocalPostgres, LocalNats],
    start_gateway: StartGateway,
) -> None:
    postgres, nats_server = own_servers
    service = await own_platform.start(
        "bare", env={"COCREATE_HEALTH_CHECK_SECONDS": "0.2"}, definition=BARE
    )
    health = stub(service, health_pb2_grpc.HealthStub)
    gateway = await start_gateway({name: service.address for name in ("ideas", "votes", "rewards")})

    async def statuses() -> dict[str, int]:
        answers = {}
        for name in (*READINESS, LIVENESS):
            answer = await health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            answers[name] = answer.status
        return answers

    async def readiness_is(status: int) -> dict[str, int] | None:
        seen = await statuses()
        return seen if all(seen[name] == status for name in READINESS) else None

    async def http_status(path: str) -> int:
        async with aiohttp.ClientSession() as session, session.get(gateway + path) as answer:
            return answer.status

    assert await statuses() == {"": SERVING, DEAD_LETTERS: SERVING, LIVENESS: SERVING}
    assert (await http_status("/readyz"), await http_status("/healthz")) == (200, 200)

    # Postgres away: not ready, still alive; the metrics say "unknown", not a number.
    await asyncio.to_thread(postgres.stop)
    seen = await eventually(lambda: readiness_is(NOT_SERVING), within=30)
    assert seen[LIVENESS] == SERVING
    assert (await http_status("/readyz"), await http_status("/healthz")) == (503, 200)
    away = await scrape(metrics_url(service.metrics_port))
    assert away.is_nan("cocreate_outbox_pending", service="bare")
    assert (
        away.count("cocreate_metrics_probe_failures_total", service="bare", probe="backbone") >= 1
    )

    await asyncio.to_thread(postgres.start)
    await eventually(lambda: readiness_is(SERVING), within=60)
    assert await http_status("/readyz") == 200
    back = await scrape(metrics_url(service.metrics_port))
    assert back.value("cocreate_outbox_pending", service="bare") == 0

    # NATS away: the same.
    await asyncio.to_thread(nats_server.stop)
    seen = await eventually(lambda: readiness_is(NOT_SERVING), within=30)
    assert seen[LIVENESS] == SERVING
    assert (await http_status("/readyz"), await http_status("/healthz")) == (503, 200)

    await asyncio.to_thread(nats_server.start)
    await eventually(lambda: readiness_is(SERVING), within=60)
    assert await http_status("/readyz") == 200
