"""Migrations run once, whatever restarts or races; poison events are parked and replayable."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from cocreate.ops.v1 import dead_letter_service_pb2 as ops
from cocreate.ops.v1 import dead_letter_service_pb2_grpc as ops_grpc
from google.protobuf import wrappers_pb2

from services.kit import events
from services.kit.db import KIT_MIGRATIONS, create_pool, migrate
from services.kit.inbox import InboxConsumer
from services.kit.outbox import Outbox
from services.kit.server import ServiceDefinition
from tests.support import Platform, eventually, metadata, stub


def _notes_migrations(folder: Path) -> Path:
    folder.mkdir()
    (folder / "0001_notes.sql").write_text("create table notes (body text not null);")
    (folder / "0002_notes_author.sql").write_text("alter table notes add column author text;")
    return folder


async def test_restart_reapplies_no_migration_and_keeps_data(
    platform: Platform, tmp_path: Path
) -> None:
    definition = ServiceDefinition(
        name="notes",
        service_names=[],
        register=lambda server, runtime: None,
        migrations=_notes_migrations(tmp_path / "migrations"),
    )
    first = await platform.start("notes", definition=definition)
    await first.runtime.pool.execute("insert into notes (body, author) values ('kept', 'm1')")
    applied_before = await first.runtime.pool.fetch("select * from schema_migrations")
    await first.stop()

    second = await platform.start("notes", definition=definition)
    applied_after = await second.runtime.pool.fetch("select * from schema_migrations")
    assert applied_after == applied_before
    assert {(r["component"], r["name"]) for r in applied_after} >= {
        ("notes", "0001_notes.sql"),
        ("notes", "0002_notes_author.sql"),
        ("kit", "0001_backbone.sql"),
    }
    assert await second.runtime.pool.fetchval("select body from notes") == "kept"


async def test_replicas_starting_together_apply_each_migration_once(
    platform: Platform, tmp_path: Path
) -> None:
    folder = _notes_migrations(tmp_path / "migrations")
    url = platform.database_url("race")
    pools = [await create_pool(url, min_size=1, max_size=2) for _ in range(4)]
    try:
        results = await asyncio.gather(
            *(migrate(pool, [("kit", KIT_MIGRATIONS), ("notes", folder)]) for pool in pools)
        )
    finally:
        for pool in pools:
            await pool.close()
    applied = [name for result in results for name in result]
    assert sorted(applied) == [
        "kit/0001_backbone.sql",
        "kit/0002_inbox_handled_by.sql",
        "notes/0001_notes.sql",
        "notes/0002_notes_author.sql",
    ]


async def test_failing_event_is_parked_then_replayed(platform: Platform) -> None:
    healthy = asyncio.Event()  # the handler fails until the "bug" is fixed

    async def handle(conn: asyncpg.Connection, event: events.Event[Any]) -> None:
        if not healthy.is_set():
            raise RuntimeError("downstream rule missing")
        await conn.execute("insert into handled (value) values ($1)", event.message.value)

    consumer = InboxConsumer(
        "notes-poison",
        {wrappers_pb2.StringValue: handle},
        subjects=["cocreate.test.poison.sent"],
    )
    definition = ServiceDefinition(
        name="notes", service_names=[], register=lambda s, r: None, consumers=lambda r: [consumer]
    )
    # The kit gives every consumer the configured delivery rule.
    delivery = {"COCREATE_CONSUMER_MAX_DELIVER": "3", "COCREATE_CONSUMER_BACKOFF_SECONDS": "0.05"}
    service = await platform.start("notes", env=delivery, definition=definition)
    pool = service.runtime.pool
    await pool.execute("create table handled (value text not null)")
    async with pool.acquire() as conn, conn.transaction():
        await Outbox("test").emit(
            conn,
            wrappers_pb2.StringValue(value="v1"),
            aggregate_id="p",
            subject="cocreate.test.poison.sent",
        )

    dead_letters = stub(service, ops_grpc.DeadLetterServiceStub)
    admin = metadata("admin-1", "admin")

    async def parked() -> list[ops.DeadLetter]:
        answer = await dead_letters.ListDeadLetters(ops.ListDeadLettersRequest(), metadata=admin)
        return list(answer.dead_letters)

    [letter] = await eventually(parked)
    assert letter.consumer == "notes-poison"
    assert letter.deliveries == 3
    assert "downstream rule missing" in letter.error
    assert await pool.fetchval("select count(*) from handled") == 0

    # Replaying while the handler still fails keeps the dead letter.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await dead_letters.ReplayDeadLetter(
            ops.ReplayDeadLetterRequest(id=letter.id), metadata=admin
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len(await parked()) == 1

    healthy.set()
    await dead_letters.ReplayDeadLetter(ops.ReplayDeadLetterRequest(id=letter.id), metadata=admin)
    assert await parked() == []
    assert await pool.fetchval("select count(*) from handled") == 1
