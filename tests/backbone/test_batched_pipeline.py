"""The relay publishes in batches and consumers apply batches in one transaction,
still once per event; a poison event in a batch is parked alone."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from google.protobuf import wrappers_pb2

from services.kit import events
from services.kit.inbox import InboxConsumer
from services.kit.outbox import Outbox, PendingEvent
from services.kit.server import RunningService, ServiceDefinition
from tests.support import Platform, eventually

SUBJECT = "cocreate.test.batch.sent"


async def _start(platform: Platform, name: str) -> RunningService:
    async def handle(conn: asyncpg.Connection, event: events.Event[Any]) -> None:
        if event.message.value == "poison":
            raise RuntimeError("this event can never be handled")
        await conn.execute(
            "insert into handled (value, tx) values ($1, txid_current())", event.message.value
        )

    consumer = InboxConsumer(
        name,
        {wrappers_pb2.StringValue: handle},
        subjects=[SUBJECT],
    )
    definition = ServiceDefinition(
        name="notes", service_names=[], register=lambda s, r: None, consumers=lambda r: [consumer]
    )
    # The kit gives every consumer the configured delivery rule.
    delivery = {"COCREATE_CONSUMER_MAX_DELIVER": "2", "COCREATE_CONSUMER_BACKOFF_SECONDS": "0.05"}
    service = await platform.start("notes", env=delivery, definition=definition)
    await service.runtime.pool.execute(
        "create table if not exists handled (value text not null, tx bigint not null)"
    )
    return service


async def _emit(service: RunningService, values: list[str]) -> None:
    """All in one transaction, so the relay finds them together."""
    async with service.runtime.pool.acquire() as conn, conn.transaction():
        await Outbox("test").emit_many(
            conn,
            [
                PendingEvent(wrappers_pb2.StringValue(value=v), aggregate_id=v, subject=SUBJECT)
                for v in values
            ],
        )


async def test_a_batch_is_published_and_applied_together_once_each(platform: Platform) -> None:
    service = await _start(platform, "notes-batch")
    pool = service.runtime.pool
    values = [f"v{i}" for i in range(300)]
    await _emit(service, values)

    async def all_handled() -> bool:
        return bool(await pool.fetchval("select count(*) from handled") >= len(values))

    await eventually(all_handled)
    rows = await pool.fetch("select value, tx from handled")
    assert sorted(r["value"] for r in rows) == sorted(values)  # each once
    # Fewer transactions than events: events were applied together.
    assert len({r["tx"] for r in rows}) < len(values)
    assert await pool.fetchval("select count(*) from outbox where published_at is null") == 0


async def test_commits_close_together_are_published_in_rounds(platform: Platform) -> None:
    """A commit every few milliseconds (a busy writer) is published in rounds
    at most every COCREATE_RELAY_GATHER_SECONDS (25 ms), not a round for
    each commit: each round is a transaction and acknowledgements to wait for."""
    service = await _start(platform, "notes-rounds")
    pool = service.runtime.pool
    values = [f"v{i}" for i in range(20)]
    for value in values:
        await _emit(service, [value])  # its own commit, so its own NOTIFY
        await asyncio.sleep(0.005)

    async def all_handled() -> bool:
        return bool(await pool.fetchval("select count(*) from handled") == len(values))

    await eventually(all_handled)
    # A round stamps its events with its transaction's now().
    rounds = await pool.fetchval("select count(distinct published_at) from outbox")
    assert rounds <= len(values) // 2, rounds


async def test_a_poison_event_in_a_batch_is_parked_alone(platform: Platform) -> None:
    service = await _start(platform, "notes-poison-batch")
    pool = service.runtime.pool
    values = [f"v{i}" for i in range(40)]
    await _emit(service, [*values[:20], "poison", *values[20:]])

    async def settled() -> bool:
        handled = await pool.fetchval("select count(*) from handled")
        parked = await pool.fetchval("select count(*) from dead_letters")
        return bool(handled == len(values) and parked == 1)

    await eventually(settled)
    assert sorted(r["value"] for r in await pool.fetch("select value from handled")) == sorted(
        values
    )
    letter = await pool.fetchrow("select deliveries, error from dead_letters")
    assert letter["deliveries"] == 2
    assert "can never be handled" in letter["error"]
