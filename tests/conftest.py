"""Session-wide real PostgreSQL and nats-server (from their PyPI wheels), on free
ports in temporary folders; a clean stream and fresh databases for every test."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TypeVar

import nats
import pytest

from deploy.localstack import LocalNats, LocalPostgres, free_port
from tests.support import Platform

S = TypeVar("S", LocalPostgres, LocalNats)

# The tests run the platform in development mode (development tokens), as
# `make run` does; so do the CLI and the child processes they start.
os.environ["COCREATE_ENV"] = "development"
# Traces are not exported from the tests' process whatever the shell says;
# the trace tests collect spans themselves (tests/gateway/test_traces.py).
for _variable in [name for name in os.environ if name.startswith("OTEL_")]:
    del os.environ[_variable]


def start_on_a_free_port(make: Callable[[int], S], attempts: int = 3) -> S:
    """Another process may take a free port between our look-up and the server's
    bind; then the server exits at start and we try another port."""
    for attempt in range(attempts):
        server = make(free_port())
        try:
            return server.start()
        except RuntimeError:
            server.stop()
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    folder = tmp_path_factory.mktemp("pg")
    server = start_on_a_free_port(lambda port: LocalPostgres(folder / "data", port, durable=False))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalNats]:
    folder = tmp_path_factory.mktemp("nats")
    server = start_on_a_free_port(lambda port: LocalNats(folder / "js", port, sync_always=False))
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


@pytest.fixture
async def own_platform(
    own_servers: tuple[LocalPostgres, LocalNats],
) -> AsyncIterator[Platform]:
    """A platform on a Postgres and a nats-server of the test's own (its
    module's `own_servers` fixture), for tests that kill or stop them."""
    platform = Platform(*own_servers)
    try:
        yield platform
    finally:
        await platform.stop_all()
