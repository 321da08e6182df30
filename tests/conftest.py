"""Session-wide real PostgreSQL and nats-server (from their PyPI wheels), on free
ports in temporary folders; a clean stream and fresh databases for every test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator

import nats
import pytest

from deploy.localstack import LocalNats, LocalPostgres, free_port
from tests.support import Platform


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    server = LocalPostgres(tmp_path_factory.mktemp("pg") / "data", free_port(), durable=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    server = LocalNats(tmp_path_factory.mktemp("nats") / "js", free_port(), sync_always=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def clean_stream(nats_server: LocalNats) -> None:
    """Remove the event stream (and with it every consumer) left by an earlier test."""
    nc = await nats.connect(nats_server.url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream("COCREATE")
    finally:
        await nc.close()


@pytest.fixture
async def platform(
    postgres: LocalPostgres, nats_server: LocalNats, clean_stream: None
) -> AsyncIterator[Platform]:
    running = Platform(postgres, nats_server)
    try:
        yield running
    finally:
        await running.stop_all()
