"""Helpers the tests share: starting services against the session's real
Postgres and NATS, tokens, rich error details, and waiting for a condition."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from deploy.localstack import LocalNats, LocalPostgres
from services.kit import auth, config
from services.kit.server import RunningService, ServiceDefinition, start

T = TypeVar("T")
M = TypeVar("M", bound=pb_message.Message)

_database_numbers = itertools.count(1)


def metadata(member_id: str, role: str = "member") -> tuple[tuple[str, str], ...]:
    """gRPC call metadata with a valid development token."""
    token = auth.mint_token(member_id, role, config.DEV_JWT_SECRET)
    return (("authorization", f"Bearer {token}"),)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds
    with the last value it returned."""
    deadline = time.monotonic() + within
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {last!r}")
        await asyncio.sleep(interval)


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status a service sent with an error."""
    status: status_pb2.Status | None = rpc_status.from_call(error)
    if status is None:
        raise AssertionError(f"no rich status in the error {error.code()}: {error.details()}")
    return status


def detail(error: grpc.aio.AioRpcError, kind: type[M]) -> M:
    """The first detail of type `kind` in the error."""
    for packed in rich_status(error).details:
        found = kind()
        if packed.Unpack(found):
            return found
    raise AssertionError(f"no {kind.DESCRIPTOR.full_name} in the error details")


def violated_fields(error: grpc.aio.AioRpcError) -> set[str]:
    return {v.field for v in detail(error, error_details_pb2.BadRequest).field_violations}


def error_reason(error: grpc.aio.AioRpcError) -> str:
    return str(detail(error, error_details_pb2.ErrorInfo).reason)


class Platform:
    """Starts services in this test's event loop against fresh databases on the
    session's Postgres and the session's NATS (whose stream is clean per test)."""

    def __init__(self, postgres: LocalPostgres, nats_server: LocalNats) -> None:
        self.postgres = postgres
        self.nats = nats_server
        self.database_urls: dict[str, str] = {}
        self.running: list[RunningService] = []

    def database_url(self, service: str) -> str:
        if service not in self.database_urls:
            name = f"test{next(_database_numbers)}_{service}"
            self.database_urls[service] = self.postgres.create_database(name)
        return self.database_urls[service]

    def config(self, service: str, env: dict[str, str] | None = None) -> config.Config:
        prefix = f"COCREATE_{service.upper()}_"
        settings = {
            prefix + "DATABASE_URL": self.database_url(service),
            prefix + "ADDR": "127.0.0.1:0",
            prefix + "METRICS_ADDR": "127.0.0.1:0",
            "COCREATE_NATS_URL": self.nats.url,
            "COCREATE_ENV": "development",
            "COCREATE_RELAY_POLL_SECONDS": "0.2",
            "COCREATE_SHUTDOWN_GRACE_SECONDS": "1",
            **(env or {}),
        }
        return config.load(service, settings)

    async def start(
        self,
        service: str,
        env: dict[str, str] | None = None,
        definition: ServiceDefinition | None = None,
    ) -> RunningService:
        """Start `service` (its services/<name>/service.py DEFINITION) and
        stop it when the test ends."""
        if definition is None:
            definition = importlib.import_module(f"services.{service}.service").DEFINITION
        assert definition is not None
        running = await start(definition, self.config(service, env))
        self.running.append(running)
        return running

    def channel(self, running: RunningService) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(running.address)

    async def stop_all(self) -> None:
        for running in reversed(self.running):
            await running.stop(grace=1)
        self.running.clear()


def stub(running: RunningService, stub_class: Callable[[grpc.aio.Channel], T]) -> T:
    """A client stub on a new channel to `running` (closed with the test's loop)."""
    return stub_class(grpc.aio.insecure_channel(running.address))
