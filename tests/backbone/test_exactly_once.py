"""Nothing lost, nothing twice: the outbox relay and the inbox consumer under crashes.

The crashes are real: a child process runs the relay or the consumer with a
failpoint that ends it with os._exit (no cleanup, like kill -9) at the exact
step under test. Recovery runs the same code again.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import nats
import pytest
from google.protobuf import wrappers_pb2
from nats.js import JetStreamContext

from services.kit import events
from services.kit.db import KIT_MIGRATIONS, create_pool, migrate
from services.kit.failpoints import CRASH_EXIT_CODE
from services.kit.outbox import Outbox, OutboxRelay
from services.kit.server import ensure_stream
from tests.backbone import effects
from tests.support import Platform, eventually


@dataclass
class Backbone:
    database_url: str
    nats_url: str
    pool: asyncpg.Pool
    js: JetStreamContext

    def relay(self) -> OutboxRelay:
        return OutboxRelay(self.pool, self.js, dsn=self.database_url, stream=effects.STREAM)

    async def effect_rows(self) -> list[asyncpg.Record]:
        return list(await self.pool.fetch("select event_id, value from effects"))

    async def stream_messages(self) -> int:
        info = await self.js.stream_info(effects.STREAM)
        return int(info.state.messages)

    def crash_run(self, role: str, failpoint: str) -> int:
        """Run the relay or the consumer in a child process armed to die at `failpoint`."""
        env = {**os.environ, "COCREATE_FAILPOINTS": failpoint}
        child = subprocess.run(
            [sys.executable, "-m", "tests.backbone.effects", role,
             "--database-url", self.database_url, "--nats-url", self.nats_url],
            env=env, timeout=60, capture_output=True,
        )  # fmt: skip
        return child.returncode


@pytest.fixture
async def backbone(platform: Platform) -> AsyncIterator[Backbone]:
    url = platform.database_url("backbone")
    pool = await create_pool(url, min_size=1, max_size=5)
    await migrate(pool, [("kit", KIT_MIGRATIONS)])
    await pool.execute(effects.EFFECTS_TABLE)
    nc = await nats.connect(platform.nats.url)
    js = nc.jetstream()
    await ensure_stream(js, effects.STREAM)
    try:
        yield Backbone(url, platform.nats.url, pool, js)
    finally:
        await nc.close()
        await pool.close()


async def test_relay_killed_after_publish_before_marking_sent_publishes_once(
    backbone: Backbone,
) -> None:
    event_id = await effects.emit_effect(backbone.pool, "relay-crash")

    assert backbone.crash_run("relay", "relay.after_publish") == CRASH_EXIT_CODE
    # The publish reached JetStream but the row was never marked sent.
    assert await backbone.stream_messages() == 1
    unsent = await backbone.pool.fetchval("select count(*) from outbox where published_at is null")
    assert unsent == 1

    # The relay comes back and publishes the row again; JetStream drops the copy.
    assert await backbone.relay().publish_pending() == 1
    assert await backbone.stream_messages() == 1
    assert (
        await backbone.pool.fetchval("select count(*) from outbox where published_at is null") == 0
    )

    # The consumer applies the event exactly once.
    stop = asyncio.Event()
    consumer = asyncio.create_task(
        effects.effects_consumer().run(backbone.pool, backbone.js, effects.STREAM, stop)
    )
    try:
        rows = await eventually(backbone.effect_rows)
        assert [(str(r["event_id"]), r["value"]) for r in rows] == [(event_id, "relay-crash")]
    finally:
        stop.set()
        await consumer


async def test_consumer_killed_after_commit_before_ack_applies_once(backbone: Backbone) -> None:
    await effects.emit_effect(backbone.pool, "consumer-crash")
    assert await backbone.relay().publish_pending() == 1

    assert backbone.crash_run("consume", "consumer.after_commit") == CRASH_EXIT_CODE
    assert len(await backbone.effect_rows()) == 1  # committed, never acked

    # The consumer restarts; JetStream redelivers the unacked event after ack_wait,
    # the inbox recognises it, and it is acked without being applied again.
    stop = asyncio.Event()
    consumer = asyncio.create_task(
        effects.effects_consumer(ack_wait_seconds=1.0).run(
            backbone.pool, backbone.js, effects.STREAM, stop
        )
    )

    async def redelivered_and_acked() -> bool:
        info = await backbone.js.consumer_info(effects.STREAM, effects.CONSUMER)
        # Two deliveries of the one event (consumer_seq 2 for stream_seq 1), the second acked.
        return bool(
            info.delivered.stream_seq == 1
            and info.ack_floor.consumer_seq >= 2
            and info.num_ack_pending == 0
        )

    try:
        await eventually(redelivered_and_acked)
    finally:
        stop.set()
        await consumer
    assert len(await backbone.effect_rows()) == 1


async def test_same_event_published_again_after_dedup_window_is_applied_once(
    backbone: Backbone,
) -> None:
    """JetStream's duplicate window is finite; the inbox is what makes handling idempotent."""
    event_id = await effects.emit_effect(backbone.pool, "republished")
    envelope = await backbone.pool.fetchval("select envelope from outbox")
    for _ in range(5):  # as if re-published long after the window: new Nats-Msg-Id each time
        await backbone.js.publish(
            effects.SUBJECT, envelope, headers={"Nats-Msg-Id": str(uuid.uuid4())}
        )
    assert await backbone.stream_messages() == 5

    stop = asyncio.Event()
    consumer = asyncio.create_task(
        effects.effects_consumer().run(backbone.pool, backbone.js, effects.STREAM, stop)
    )

    async def all_acked() -> bool:
        try:
            info = await backbone.js.consumer_info(effects.STREAM, effects.CONSUMER)
        except nats.js.errors.NotFoundError:
            return False  # the consumer task has not created it yet
        return bool(info.ack_floor.stream_seq == 5)

    try:
        await eventually(all_acked)
    finally:
        stop.set()
        await consumer
    rows = await backbone.effect_rows()
    assert [str(r["event_id"]) for r in rows] == [event_id]


async def test_rolled_back_transaction_leaves_no_event(backbone: Backbone) -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback):
        async with backbone.pool.acquire() as conn, conn.transaction():
            await Outbox("test").emit(
                conn, wrappers_pb2.StringValue(value="x"), aggregate_id="x", subject=effects.SUBJECT
            )
            raise Rollback
    assert await backbone.pool.fetchval("select count(*) from outbox") == 0
    assert await backbone.relay().publish_pending() == 0


def test_event_subjects_follow_the_naming_scheme() -> None:
    for type_name, subject in events.SUBJECTS.items():
        parts = subject.split(".")
        assert parts[0] == "cocreate" and len(parts) == 4, subject
        assert parts[1] in {"ideas", "votes", "rewards"}, type_name


async def test_published_events_older_than_the_retention_are_pruned_unpublished_never(
    backbone: Backbone,
) -> None:
    for value in ("old", "recent", "waiting"):
        await effects.emit_effect(backbone.pool, value)
    assert await backbone.relay().publish_pending() == 3
    await effects.emit_effect(backbone.pool, "unpublished-old")
    # Age two rows past the retention: one published, one never published.
    await backbone.pool.execute(
        "update outbox set created_at = now() - interval '30 days', "
        "published_at = published_at - interval '30 days' "
        "where id = (select min(id) from outbox) or published_at is null"
    )
    relay = OutboxRelay(
        backbone.pool, backbone.js, dsn=backbone.database_url, stream=effects.STREAM,
        keep_published_hours=24,
    )  # fmt: skip
    assert await relay.prune_published() == 1
    left = await backbone.pool.fetch(
        "select published_at is null as waiting from outbox order by id"
    )
    assert [r["waiting"] for r in left] == [False, False, True]
