"""What one client may ask of the gateway, and what all of them together may.

A client is its remote address. Each has a token bucket (calls per second with
a burst; a batch costs one token per call), a cap on upstream calls in flight
(further calls wait for a slot, within the call's deadline) and a cap on open
upstream streams (a further stream is refused at once: streams are long, and
waiting behind one would hang). The same caps apply to all clients together.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

# Forget clients that have been idle (full bucket, nothing in flight) once
# there are this many, so a scan of many addresses cannot grow memory for ever.
_PRUNE_AT = 10_000


class Busy(Exception):
    """A cap is reached: retry after `retry_after_seconds`."""

    def __init__(self, message: str, *, limit: int, retry_after_seconds: float) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.retry_after_seconds = retry_after_seconds


@dataclass
class _Client:
    tokens: float
    updated: float
    calls: asyncio.Semaphore
    in_flight: int = 0
    streams: int = 0


@dataclass
class Limits:
    rate_per_second: float  # 0: no rate limit
    burst: int
    calls_per_client: int
    calls_total: int
    streams_per_client: int
    streams_total: int
    _clients: dict[str, _Client] = field(default_factory=dict)
    _streams: int = 0
    _all_calls: asyncio.Semaphore | None = None

    def _client(self, key: str) -> _Client:
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= _PRUNE_AT:
                self._prune()
            client = _Client(
                tokens=float(self.burst),
                updated=time.monotonic(),
                calls=asyncio.Semaphore(self.calls_per_client),
            )
            self._clients[key] = client
        return client

    def _prune(self) -> None:
        now = time.monotonic()
        for key, client in list(self._clients.items()):
            self._refill(client, now)
            if client.in_flight == 0 and client.streams == 0 and client.tokens >= self.burst:
                del self._clients[key]

    def _refill(self, client: _Client, now: float) -> None:
        client.tokens = min(
            float(self.burst), client.tokens + (now - client.updated) * self.rate_per_second
        )
        client.updated = now

    def admit(self, key: str, cost: int) -> None:
        """Take `cost` calls from the client's bucket, or Busy with when to retry."""
        if self.rate_per_second <= 0:
            return
        client = self._client(key)
        self._refill(client, time.monotonic())
        cost = min(cost, self.burst)
        if client.tokens >= cost:
            client.tokens -= cost
            return
        wait = (cost - client.tokens) / self.rate_per_second
        raise Busy(
            f"rate limit: at most {self.rate_per_second:g} calls per second "
            f"(bursts of {self.burst}) per client; retry after {wait:.2f}s",
            limit=self.burst,
            retry_after_seconds=wait,
        )

    @contextlib.asynccontextmanager
    async def call(self, key: str, wait_seconds: float) -> AsyncIterator[None]:
        """A slot for one upstream call: waits up to `wait_seconds` while the
        client (or everyone) has the maximum in flight, then Busy."""
        if self._all_calls is None:
            self._all_calls = asyncio.Semaphore(self.calls_total)
        everyone = self._all_calls
        client = self._client(key)
        client.in_flight += 1
        try:
            async with contextlib.AsyncExitStack() as held:
                try:
                    async with asyncio.timeout(wait_seconds):
                        await held.enter_async_context(client.calls)
                        await held.enter_async_context(everyone)
                except TimeoutError:
                    raise Busy(
                        f"the gateway had no free slot for this call within {wait_seconds:g}s "
                        f"(at most {self.calls_per_client} calls in flight per client, "
                        f"{self.calls_total} in all); retry later",
                        limit=self.calls_per_client,
                        retry_after_seconds=1.0,
                    ) from None
                yield
        finally:
            client.in_flight -= 1

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[None]:
        """A slot for one upstream stream, or Busy at once."""
        client = self._client(key)
        if client.streams >= self.streams_per_client:
            raise Busy(
                f"this client already has {client.streams} streams open, the gateway's "
                f"limit per client; retry when one ends",
                limit=self.streams_per_client,
                retry_after_seconds=1.0,
            )
        if self._streams >= self.streams_total:
            raise Busy(
                f"the gateway has {self._streams} streams open, its limit; retry later",
                limit=self.streams_total,
                retry_after_seconds=1.0,
            )
        client.streams += 1
        self._streams += 1
        try:
            yield
        finally:
            client.streams -= 1
            self._streams -= 1
