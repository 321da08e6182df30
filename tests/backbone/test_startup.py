"""A service started before its database (a host booting, a database
recovering after a crash) waits for it instead of exiting; one that never
comes is an error once the wait is over."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from deploy.localstack import LocalNats, LocalPostgres, free_port
from services.kit import config
from services.kit.server import start
from services.votes.service import DEFINITION
from tests.support import eventually


def votes_config(database_port: int, nats_server: LocalNats, wait: str) -> config.Config:
    return config.load(
        "votes",
        {
            "COCREATE_VOTES_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{database_port}/postgres",
            "COCREATE_VOTES_ADDR": "127.0.0.1:0",
            "COCREATE_VOTES_METRICS_ADDR": "127.0.0.1:0",
            "COCREATE_NATS_URL": nats_server.url,
            "COCREATE_ENV": "development",
            "COCREATE_STARTUP_WAIT_SECONDS": wait,
            "COCREATE_SHUTDOWN_GRACE_SECONDS": "1",
        },
    )


@pytest.mark.timeout(180)
async def test_a_service_started_before_its_database_waits_for_it(
    tmp_path: Path, nats_server: LocalNats, clean_stream: None, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    starting = asyncio.create_task(start(DEFINITION, votes_config(port, nats_server, "120")))

    async def waiting() -> bool:
        return any(r.getMessage() == "waiting for PostgreSQL" for r in caplog.records)

    with caplog.at_level(logging.WARNING):
        await eventually(waiting, within=30)
    assert not starting.done()
    postgres = await asyncio.to_thread(LocalPostgres(tmp_path / "pg", port).start)
    try:
        service = await asyncio.wait_for(starting, timeout=120)
        try:
            async with grpc.aio.insecure_channel(service.address) as channel:
                answer = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=10
                )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        finally:
            await service.stop(grace=1)
    finally:
        await asyncio.to_thread(postgres.stop)


async def test_a_database_that_never_comes_is_an_error_once_the_wait_is_over(
    nats_server: LocalNats,
) -> None:
    started = time.monotonic()
    with pytest.raises(OSError):
        await start(DEFINITION, votes_config(free_port(), nats_server, "1"))
    assert time.monotonic() - started < 10
