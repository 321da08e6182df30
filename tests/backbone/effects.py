"""A tiny producer/consumer pair on the kit, for the backbone tests.

An "effect" event (a StringValue on cocreate.test.effect) is written through
the outbox; the consumer's handler inserts one row into `effects` per handled
event. The table has no unique key on purpose: an event applied twice would
show as two rows. Run as a program (`python -m tests.backbone.effects relay|consume`)
so a failpoint can kill it like kill -9 at an exact step.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import nats
from google.protobuf import wrappers_pb2

from services.kit import events
from services.kit.db import create_pool
from services.kit.inbox import InboxConsumer
from services.kit.outbox import Outbox, OutboxRelay
from services.kit.server import ensure_stream

SUBJECT = "cocreate.test.effect.happened"
STREAM = "COCREATE"
CONSUMER = "test-effects"

EFFECTS_TABLE = """
create table if not exists effects (
    event_id uuid not null,
    value text not null,
    applied_at timestamptz not null default now()
)
"""


async def emit_effect(pool: asyncpg.Pool, value: str) -> str:
    async with pool.acquire() as conn, conn.transaction():
        return await Outbox("test").emit(
            conn, wrappers_pb2.StringValue(value=value), aggregate_id=value, subject=SUBJECT
        )


async def record_effect(conn: asyncpg.Connection, event: events.Event[Any]) -> None:
    await conn.execute(
        "insert into effects (event_id, value) values ($1, $2)", event.event_id, event.message.value
    )


def effects_consumer(**options: Any) -> InboxConsumer:
    return InboxConsumer(
        CONSUMER, {wrappers_pb2.StringValue: record_effect}, subjects=[SUBJECT], **options
    )


async def _run(role: str, database_url: str, nats_url: str) -> None:
    pool = await create_pool(database_url, min_size=1, max_size=4)
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_stream(js, STREAM)
    stop = asyncio.Event()
    if role == "relay":
        relay = OutboxRelay(pool, js, dsn=database_url, stream=STREAM, poll_seconds=0.1)
        await relay.publish_pending()
    else:
        await effects_consumer(ack_wait_seconds=1.0).run(pool, js, STREAM, stop)
    # Reached only when the failpoint is not armed.
    await nc.close()
    await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["relay", "consume"])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--nats-url", required=True)
    args = parser.parse_args()
    asyncio.run(_run(args.role, args.database_url, args.nats_url))


if __name__ == "__main__":
    main()
