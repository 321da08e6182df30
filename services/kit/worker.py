"""A background loop that wakes on a Postgres NOTIFY and polls as a fallback.

The outbox relay and the votes tally folder both work this way: a commit sends
NOTIFY on a channel, the loop runs its step at once; a lost notification (or a
LISTEN connection lost with a database restart) costs at most one poll
interval. `step` returns True when more work may be waiting, to run it again
without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import asyncpg

from services.kit import log

_log = log.get("worker")


async def run_woken(
    step: Callable[[], Awaitable[bool]],
    *,
    dsn: str,
    channel: str,
    poll_seconds: float,
    stop: asyncio.Event,
    what: str,
    gather_seconds: float = 0.0,
) -> None:
    """Run `step` whenever woken, at most once per `gather_seconds`: under load
    a commit wakes the loop many times a second, and one step over what
    gathered meanwhile costs far less than a step per wake-up."""
    wake = asyncio.Event()
    listener: asyncpg.Connection | None = None
    try:
        while not stop.is_set():
            wake.clear()
            if listener is None or listener.is_closed():
                listener = await _listen(dsn, channel, wake, what)
            started = time.monotonic()
            try:
                more = await step()
            except Exception:  # the database or the broker away: log, back off, try again
                _log.warning(f"could not {what}; retrying", exc_info=True)
                more = False
            if more:
                continue
            await wait_any(wake, stop, seconds=poll_seconds)
            rest = gather_seconds - (time.monotonic() - started)
            if rest > 0 and not stop.is_set():
                await wait_any(stop, seconds=rest)
    finally:
        if listener is not None:
            with contextlib.suppress(Exception):
                await listener.close()


async def _listen(
    dsn: str, channel: str, wake: asyncio.Event, what: str
) -> asyncpg.Connection | None:
    try:
        listener = await asyncpg.connect(dsn)
        await listener.add_listener(channel, lambda *_: wake.set())
    except Exception:
        _log.warning(f"cannot LISTEN to {channel} now; polling to {what}", exc_info=True)
        return None
    return listener


async def wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when one of `events` is set, or after `seconds`."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
