"""`db.write_all` writes rows to many tables and runs data-modifying
statements in one statement: each change's parameters, numbered from $1 as
if it stood alone, reach it and no other, and how many rows each returned
comes back in order."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.kit import db
from tests.support import Platform


@pytest.fixture
async def pool(platform: Platform) -> AsyncIterator[asyncpg.Pool]:
    pool = await db.create_pool(platform.database_url("write_all"))
    try:
        await pool.execute("drop table if exists counters, notes")
        await pool.execute("create table counters (id int primary key, n int not null)")
        await pool.execute("create table notes (id int, body text)")
        await pool.execute("insert into counters values (1, 0), (2, 0)")
        yield pool
    finally:
        await pool.close()


async def test_rows_and_changes_are_written_in_one_statement_with_their_own_parameters(
    pool: asyncpg.Pool,
) -> None:
    notes = db.Rows("notes", (("id", "int"), ("body", "text")), ([7, 8], ["seven", "eight"]))
    bump = db.Change(
        "update counters set n = n + $2 where id = any($1::int[]) returning 1", ([1, 2, 9], 5)
    )
    add = db.Change(
        "insert into counters values ($1, $2) on conflict do nothing returning 1", (3, 30)
    )
    again = db.Change(
        "insert into counters values ($1, $2) on conflict do nothing returning 1", (1, 99)
    )
    async with pool.acquire() as conn, conn.transaction():
        counts = await db.write_all(conn, [notes], [bump, add, again])

    assert counts == [2, 1, 0]
    assert dict(await pool.fetch("select id, n from counters order by id")) == {1: 5, 2: 5, 3: 30}
    assert sorted(await pool.fetch("select id, body from notes")) == [(7, "seven"), (8, "eight")]


async def test_nothing_to_write_is_no_statement(pool: asyncpg.Pool) -> None:
    empty = db.Rows("notes", (("id", "int"), ("body", "text")), ([], []))
    async with pool.acquire() as conn:
        assert await db.write_all(conn, [empty]) == []
    assert await pool.fetchval("select count(*) from notes") == 0
