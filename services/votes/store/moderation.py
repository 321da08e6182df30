"""SQL for voids and vote bans: whose votes were voided or who was banned, by
whom and why."""

from __future__ import annotations

import asyncpg


async def record_void(
    conn: asyncpg.Connection, member_id: str, actor_id: str, reason: str, idea_ids: list[str]
) -> None:
    await conn.execute(
        "insert into vote_voids (member_id, actor_id, reason, voided_vote_count, idea_ids) "
        "values ($1, $2, $3, $4, $5)",
        member_id,
        actor_id,
        reason,
        len(idea_ids),
        idea_ids,
    )


async def is_vote_banned(conn: asyncpg.Connection, member_id: str) -> bool:
    """Whether the member's latest ban record is a ban (not a lift)."""
    banned = await conn.fetchval(
        "select banned from vote_bans where member_id = $1 order by id desc limit 1", member_id
    )
    return bool(banned)


async def record_vote_ban(
    conn: asyncpg.Connection, member_id: str, *, banned: bool, actor_id: str, reason: str
) -> None:
    """Record a ban placed (banned) or lifted (not banned), by whom and why."""
    await conn.execute(
        "insert into vote_bans (member_id, banned, actor_id, reason) values ($1, $2, $3, $4)",
        member_id,
        banned,
        actor_id,
        reason,
    )
