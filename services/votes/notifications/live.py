"""Live delivery inside one process: one LISTEN connection fans NOTIFYs out
to the watchers of the members they name.

A NOTIFY only wakes a watcher; the watcher reads what is new from the table.
So a NOTIFY lost while the listener reconnects costs nothing but latency: each
watcher also looks every few seconds (the catch-up), and every replica's
watchers see every commit, whichever replica's consumer wrote it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict

import asyncpg

from services.kit import log
from services.votes.notifications import store

_log = log.get("votes.notifications")


class NotificationHub:
    """Runs as one of the service's background loops."""

    def __init__(self, dsn: str, *, reconnect_seconds: float = 1.0) -> None:
        self._dsn = dsn
        self._reconnect_seconds = reconnect_seconds
        self._watchers: dict[str, set[asyncio.Event]] = defaultdict(set)

    def subscribe(self, member_id: str) -> asyncio.Event:
        wake = asyncio.Event()
        self._watchers[member_id].add(wake)
        return wake

    def unsubscribe(self, member_id: str, wake: asyncio.Event) -> None:
        watchers = self._watchers.get(member_id)
        if watchers is not None:
            watchers.discard(wake)
            if not watchers:
                del self._watchers[member_id]

    def wake(self, member_ids: list[str] | None) -> None:
        """Wake the watchers of these members (None: everybody)."""
        if member_ids is None:
            targets = [w for group in self._watchers.values() for w in group]
        else:
            targets = [w for m in member_ids for w in self._watchers.get(m, ())]
        for wake in targets:
            wake.set()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        try:
            members = json.loads(payload) if payload else None
        except ValueError:
            members = None
        self.wake([str(m) for m in members] if isinstance(members, list) else None)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            listener: asyncpg.Connection | None = None
            try:
                listener = await asyncpg.connect(self._dsn)
                await listener.add_listener(store.CHANNEL, self._on_notify)
                self.wake(None)  # anything committed while we were not listening
                while not stop.is_set() and not listener.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self._reconnect_seconds)
            except Exception:  # database away: the watchers' catch-up covers the gap
                _log.warning("notification listener lost its connection; retrying", exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._reconnect_seconds)
            finally:
                if listener is not None:
                    with contextlib.suppress(Exception):
                        await listener.close()
