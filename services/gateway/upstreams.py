"""The gateway's side of the services: one channel per target, spread over
every replica the target names (services/kit/channels.py), each call a client
span that sends its `traceparent` upstream; and whether each service answers
health (GET /readyz)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors

from services.kit import channels

# How long GET /readyz waits for a service's health answer.
HEALTH_TIMEOUT_SECONDS = 2.0


class Upstreams:
    def __init__(self, targets: Mapping[str, str]) -> None:
        self.targets = dict(targets)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def channel(self, target: str) -> grpc.aio.Channel:
        found = self._channels.get(target)
        if found is None:
            found = channels.aio_channel(target, interceptors=aio_client_interceptors())
            self._channels[target] = found
        return found

    async def close(self) -> None:
        closing, self._channels = list(self._channels.values()), {}
        for channel in closing:
            await channel.close()

    async def health(self) -> dict[str, str]:
        """Each service's health status name (SERVING when it can serve), or
        the gRPC code of the failed check."""

        async def probe(target: str) -> str:
            stub = health_pb2_grpc.HealthStub(self.channel(target))
            try:
                answer = await stub.Check(
                    health_pb2.HealthCheckRequest(), timeout=HEALTH_TIMEOUT_SECONDS
                )
            except grpc.aio.AioRpcError as err:
                return str(err.code().name)
            return str(health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))

        names = list(self.targets)
        states = await asyncio.gather(*(probe(self.targets[name]) for name in names))
        return dict(zip(names, states, strict=True))
