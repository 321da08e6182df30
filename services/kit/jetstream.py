"""JetStream requests that wait out a cluster's elections.

In a NATS cluster a stream and each consumer are Raft groups; creating one,
or asking about one, needs its leader (and the cluster's meta leader). While
a node that led one is away, the others elect a new leader within a few
seconds, and meanwhile JetStream answers 503 or not at all. A service that
starts then — or a consumer that binds again — waits for the election
instead of failing its start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import nats.errors
import nats.js.errors

from services.kit import log

T = TypeVar("T")
_log = log.get("jetstream")

# What JetStream answers while no leader is elected, or the node we were
# connected to is gone and the client reconnects to another.
ELECTION_ERRORS: tuple[type[BaseException], ...] = (
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    nats.errors.NoRespondersError,
    nats.errors.TimeoutError,
    nats.errors.ConnectionReconnectingError,
    TimeoutError,
)


async def while_electing(
    what: str, request: Callable[[], Awaitable[T]], *, within: float = 60.0
) -> T:
    """`request()`, asked again while the cluster elects a leader, for up to
    `within` seconds; then its error."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.1
    while True:
        try:
            return await request()
        except ELECTION_ERRORS as exc:
            if loop.time() + delay > deadline:
                raise
            _log.warning(
                f"waiting for JetStream to {what}", extra={"error": f"{type(exc).__name__}: {exc}"}
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
