"""SQL for what the votes service keeps of other services' state: each idea's
status, hidden flag and merge (from ideas), each member's tier (from rewards)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from cocreate.ideas.v1 import idea_status_pb2

from services.votes import domain
from services.votes.store.record import Record


async def get_idea(conn: asyncpg.Connection | asyncpg.Pool, idea_id: str) -> Record | None:
    return await conn.fetchrow("select * from ideas where idea_id = $1", idea_id)


async def upsert_idea(conn: asyncpg.Connection, idea_id: str, status: int, version: int) -> bool:
    """Store the idea's status unless a newer version is stored; whether it applied.
    A merged idea stays merged whatever arrives later."""
    applied = await conn.fetchval(
        """
        insert into ideas (idea_id, status, open, version) values ($1, $2, $3, $4)
        on conflict (idea_id) do update
            set status = excluded.status, open = excluded.open,
                version = excluded.version, updated_at = now()
            where ideas.version <= excluded.version and ideas.merged_into is null
        returning true
        """,
        idea_id,
        status,
        domain.is_open(status),
        version,
    )
    return bool(applied)


async def set_hidden(conn: asyncpg.Connection, idea_id: str, hidden: bool, version: int) -> bool:
    """Hide or show an idea unless a newer hide or show is stored; whether it
    applied. An idea not heard of yet is recorded (open) with it."""
    applied = await conn.fetchval(
        """
        insert into ideas (idea_id, status, open, version, hidden, hidden_version)
        values ($1, $2, true, 0, $3, $4)
        on conflict (idea_id) do update
            set hidden = excluded.hidden, hidden_version = excluded.hidden_version,
                updated_at = now()
            where ideas.hidden_version < excluded.hidden_version
        returning true
        """,
        idea_id,
        idea_status_pb2.IDEA_STATUS_OPEN,
        hidden,
        version,
    )
    return bool(applied)


async def ensure_idea(conn: asyncpg.Connection, idea_id: str, status: int) -> None:
    await conn.execute(
        "insert into ideas (idea_id, status, open, version) values ($1, $2, $3, 0) "
        "on conflict (idea_id) do nothing",
        idea_id,
        status,
        domain.is_open(status),
    )


async def mark_merged(
    conn: asyncpg.Connection, source_id: str, target_id: str, status: int
) -> None:
    await conn.execute(
        """
        insert into ideas (idea_id, status, open, merged_into, version)
        values ($1, $3, false, $2, 0)
        on conflict (idea_id) do update
            set status = $3, open = false, merged_into = $2, updated_at = now()
        """,
        source_id,
        target_id,
        status,
    )


async def final_target(conn: asyncpg.Connection, idea_id: str) -> str:
    """The idea at the end of a chain of merges starting at `idea_id`."""
    final: str = await conn.fetchval(
        """
        with recursive chain (idea_id, depth) as (
            select $1::text, 0
            union all
            select i.merged_into, c.depth + 1 from chain c join ideas i using (idea_id)
            where i.merged_into is not null and c.depth < 100
        )
        select idea_id from chain order by depth desc limit 1
        """,
        idea_id,
    )
    return final


async def get_member_tier(conn: asyncpg.Connection, member_id: str) -> str | None:
    tier: str | None = await conn.fetchval(
        "select tier from members where member_id = $1", member_id
    )
    return tier


async def upsert_member_tier(
    conn: asyncpg.Connection, member_id: str, tier: str, version: int
) -> bool:
    """Store the tier unless a newer (or the same) version is stored."""
    applied = await conn.fetchval(
        """
        insert into members (member_id, tier, version) values ($1, $2, $3)
        on conflict (member_id) do update
            set tier = excluded.tier, version = excluded.version, updated_at = now()
            where members.version < excluded.version
        returning true
        """,
        member_id,
        tier,
        version,
    )
    return bool(applied)


async def hold_members(conn: asyncpg.Connection, member_ids: Sequence[str]) -> None:
    """Share-lock the members' rows until commit, creating a placeholder
    (no tier, version 0: the lowest tier) for a member not seen yet. A tier
    change updates the row, so it waits; row locks, unlike advisory locks,
    do not fill the lock table however many members there are."""
    ids = sorted(set(member_ids))
    await conn.execute(
        "insert into members (member_id, tier, version) "
        "select unnest($1::text[]), '', 0 on conflict do nothing",
        ids,
    )
    await conn.execute(
        "select 1 from members where member_id = any($1::text[]) order by member_id for share",
        ids,
    )
