"""SQL for the pages of the list calls: a member's votes, an idea's
supporters, an idea's vote history."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from services.votes.store.record import Record


async def list_member_votes(
    conn: asyncpg.Pool,
    member_id: str,
    after: tuple[datetime, str] | None,
    limit: int,
    idea_ids: list[str] | None = None,
) -> list[Record]:
    """Active votes, newest first; only on `idea_ids` when given."""
    if after is None:
        return list(
            await conn.fetch(
                "select * from votes where member_id = $1 and active "
                "and ($3::text[] is null or idea_id = any($3::text[])) "
                "order by cast_at desc, idea_id limit $2",
                member_id,
                limit,
                idea_ids,
            )
        )
    return list(
        await conn.fetch(
            "select * from votes where member_id = $1 and active "
            "and ($5::text[] is null or idea_id = any($5::text[])) "
            "and (cast_at < $2 or (cast_at = $2 and idea_id > $3)) "
            "order by cast_at desc, idea_id limit $4",
            member_id,
            after[0],
            after[1],
            limit,
            idea_ids,
        )
    )


async def list_supporters(
    conn: asyncpg.Pool, idea_id: str, after: tuple[datetime, str] | None, limit: int
) -> list[Record]:
    """Active votes, oldest first."""
    if after is None:
        return list(
            await conn.fetch(
                "select * from votes where idea_id = $1 and active "
                "order by cast_at, member_id limit $2",
                idea_id,
                limit,
            )
        )
    return list(
        await conn.fetch(
            "select * from votes where idea_id = $1 and active "
            "and (cast_at, member_id) > ($2, $3) "
            "order by cast_at, member_id limit $4",
            idea_id,
            after[0],
            after[1],
            limit,
        )
    )


async def list_history(conn: asyncpg.Pool, idea_id: str, after_id: int, limit: int) -> list[Record]:
    return list(
        await conn.fetch(
            "select * from vote_history where idea_id = $1 and id > $2 order by id limit $3",
            idea_id,
            after_id,
            limit,
        )
    )
