"""Health that means something: readiness follows the service's backends,
liveness only the process.

Every service serves gRPC health with this contract (Kubernetes' `grpc`
probes use it):
- service "" (the overall status) and each named gRPC service: SERVING while
  the service can reach its Postgres and NATS, NOT_SERVING while it cannot
  (readiness: take the replica out of rotation, do not restart it; it comes
  back by itself when its backends do);
- service "liveness": SERVING while the process runs (liveness: a failing
  one means restart the process);
- on shutdown everything turns NOT_SERVING (grpc's graceful shutdown), and
  stays so.

A background watcher checks every COCREATE_HEALTH_CHECK_SECONDS (1): a
`select 1` on its own connection, within HEALTH_CHECK_TIMEOUT_SECONDS, and
whether the NATS client is connected. Its own connection, not the pool: a
pool busy with a burst of votes would read as a database away, and take the
replica out of rotation exactly when it is busiest.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import asyncpg
from grpc_health.v1 import health, health_pb2
from nats.aio.client import Client as NatsClient

from services.kit import log, worker

LIVENESS = "liveness"
CHECK_SETTING = "COCREATE_HEALTH_CHECK_SECONDS"
DEFAULT_CHECK_SECONDS = 1.0
HEALTH_CHECK_TIMEOUT_SECONDS = 1.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

_log = log.get("health")


class ReadinessWatcher:
    def __init__(
        self,
        health_servicer: health.aio.HealthServicer,
        names: Sequence[str],
        *,
        service: str,
        dsn: str,
        nats: NatsClient,
        every_seconds: float = DEFAULT_CHECK_SECONDS,
    ) -> None:
        self._health = health_servicer
        # The overall status ("") and every named service follow readiness.
        self._names = ["", *names]
        self._service = service
        self._dsn = dsn
        self._nats = nats
        self._every = every_seconds
        self._conn: asyncpg.Connection | None = None
        self._ready = True  # the service starts once both were reached

    async def serving(self) -> None:
        """At start: everything SERVING, liveness too."""
        for name in [*self._names, LIVENESS]:
            await self._health.set(name, SERVING)

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                problem = await self.check()
                ready = problem is None
                if ready != self._ready:
                    self._ready = ready
                    for name in self._names:
                        await self._health.set(name, SERVING if ready else NOT_SERVING)
                    if ready:
                        _log.info("ready: backends reachable", extra={"service": self._service})
                    else:
                        _log.warning(
                            "not ready", extra={"service": self._service, "error": problem}
                        )
                await worker.wait_any(stop, seconds=self._every)
        finally:
            await self._forget_connection()

    async def check(self) -> str | None:
        """None when Postgres and NATS are reachable; else what is not."""
        if not self._nats.is_connected:
            return "NATS is not connected"
        try:
            async with asyncio.timeout(HEALTH_CHECK_TIMEOUT_SECONDS):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await asyncpg.connect(self._dsn)
                await self._conn.fetchval("select 1")
        except Exception as exc:
            await self._forget_connection()
            return f"PostgreSQL: {type(exc).__name__}: {exc}"
        return None

    async def _forget_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()
