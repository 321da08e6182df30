"""The gateway spreads its calls over every address a service's name resolves
to — in Kubernetes, a headless Service names every ready replica — instead of
sending them all down one connection to one replica."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services.kit import channels
from tests.gateway.conftest import StartGateway


class CountCalls(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, replica: str, counts: Counter[str]) -> None:
        self._replica = replica
        self._counts = counts

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self._counts[self._replica] += 1
        return await continuation(handler_call_details)


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[list[int], Counter[str]]]:
    """Two replicas answering gRPC health on their own ports; the calls each took."""
    counts: Counter[str] = Counter()
    servers, ports = [], []
    for replica in ("a", "b"):
        server = grpc.aio.server(interceptors=[CountCalls(replica, counts)])
        servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        await server.start()
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        servers.append(server)
    yield ports, counts
    for server in servers:
        await server.stop(None)


# What a headless Service's name resolves to: one address per replica; or
# the replicas' addresses as COCREATE_<SVC>_TARGET lists them (make run, the
# replica test).
@pytest.mark.parametrize("scheme", ["ipv4:", ""])
async def test_calls_spread_over_every_replica_of_a_service(
    start_gateway: StartGateway, replicas: tuple[list[int], Counter[str]], scheme: str
) -> None:
    ports, counts = replicas
    both = scheme + ",".join(f"127.0.0.1:{port}" for port in ports)
    gateway = await start_gateway(targets={"ideas": both, "votes": both, "rewards": both})
    for _ in range(10):
        answer = await gateway.request("GET", "/readyz")
        assert answer.status == 200, answer.body
    assert sum(counts.values()) == 30
    # round_robin alternates once both connections are up (the first call may
    # find only one ready); pick_first would send all thirty to one replica.
    assert counts["a"] >= 5 and counts["b"] >= 5, counts


def test_a_target_names_every_replica() -> None:
    assert channels.target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert channels.target("[::1]:1, [::1]:2") == "ipv6:[::1]:1,[::1]:2"
    for as_is in ("dns:///votes:50052", "ipv4:127.0.0.1:1,127.0.0.1:2", "127.0.0.1:1", "votes:1"):
        assert channels.target(as_is) == as_is
