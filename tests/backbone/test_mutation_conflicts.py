"""A mutation Postgres rolls back for conflicting with another transaction (a
deadlock, a serialization failure) is run again by the kit, so two mutations
that deadlock are both answered OK, each applied once; one that keeps
conflicting is answered ABORTED after the last attempt."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.kit import db, idempotency
from services.kit.db import KIT_MIGRATIONS, create_pool, migrate
from tests.support import Platform

SERVICE = pb.DESCRIPTOR.services_by_name["RewardsService"]


@pytest.fixture
async def pool(platform: Platform) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(platform.database_url("conflicts"))
    try:
        await migrate(pool, [("kit", KIT_MIGRATIONS)])
        await pool.execute("create table counters (id int primary key, n int not null)")
        await pool.execute("insert into counters values (1, 0), (2, 0)")
        yield pool
    finally:
        await pool.close()


async def test_two_mutations_that_deadlock_are_both_applied_once(pool: asyncpg.Pool) -> None:
    mutations = idempotency.Mutations(pool, SERVICE)
    holding = {1: asyncio.Event(), 2: asyncio.Event()}
    attempts = {1: 0, 2: 0}

    def increment_both(first: int, second: int) -> idempotency.Work[pb.GrantPointsResponse]:
        async def work(conn: asyncpg.Connection) -> pb.GrantPointsResponse:
            attempts[first] += 1
            await conn.execute("update counters set n = n + 1 where id = $1", first)
            if attempts[first] == 1:  # the first time, each waits for the other's lock
                holding[first].set()
                await holding[second].wait()
            await conn.execute("update counters set n = n + 1 where id = $1", second)
            return pb.GrantPointsResponse(entry=pb.Entry(amount=first))

        return work

    answers = await asyncio.wait_for(
        asyncio.gather(
            mutations.run("m-1", pb.GrantPointsRequest(request_id="r-1"), increment_both(1, 2)),
            mutations.run("m-2", pb.GrantPointsRequest(request_id="r-2"), increment_both(2, 1)),
        ),
        timeout=30,
    )

    assert [a.entry.amount for a in answers] == [1, 2]
    assert sorted(attempts.values()) == [1, 2]  # Postgres broke the deadlock once
    counts = await pool.fetch("select id, n from counters order by id")
    assert [(r["id"], r["n"]) for r in counts] == [(1, 2), (2, 2)]
    remembered = await pool.fetchval("select count(*) from idempotent_requests")
    assert remembered == 2


async def test_a_mutation_that_keeps_conflicting_is_given_up_after_the_last_attempt(
    pool: asyncpg.Pool,
) -> None:
    mutations = idempotency.Mutations(pool, SERVICE)
    attempts = 0

    async def always_conflicts(conn: asyncpg.Connection) -> pb.GrantPointsResponse:
        nonlocal attempts
        attempts += 1
        await conn.execute("update counters set n = n + 1 where id = 1")
        raise asyncpg.SerializationError("could not serialize access")

    with pytest.raises(asyncpg.SerializationError):
        await mutations.run("m-1", pb.GrantPointsRequest(request_id="r-1"), always_conflicts)

    assert attempts == db.CONFLICT_ATTEMPTS
    assert await pool.fetchval("select n from counters where id = 1") == 0
    assert await pool.fetchval("select count(*) from idempotent_requests") == 0
