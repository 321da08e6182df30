"""SQL for what rewards keeps of other services' state, from their events:
each idea's author and status, whether it shipped or was hidden as spam (from
ideas), and who supports it (from votes). Each function runs on the caller's
connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


async def note_idea(conn: asyncpg.Connection, idea_id: str, author_id: str) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        insert into ideas (idea_id, author_id) values ($1, $2)
        on conflict (idea_id) do update
            set author_id = case when ideas.author_id = '' then excluded.author_id
                                 else ideas.author_id end
        returning *
        """,
        idea_id,
        author_id,
    )
    assert row is not None
    return row


async def set_idea_status(
    conn: asyncpg.Connection, idea_id: str, status: int, version: int
) -> None:
    await conn.execute(
        "update ideas set status = $2, status_version = $3 "
        "where idea_id = $1 and status_version < $3",
        idea_id,
        status,
        version,
    )


async def mark_shipped(conn: asyncpg.Connection, idea_id: str, shipped_at: datetime) -> None:
    await conn.execute(
        "update ideas set shipped_at = coalesce(shipped_at, $2) where idea_id = $1",
        idea_id,
        shipped_at,
    )


async def mark_hidden_as_spam(conn: asyncpg.Connection, idea_id: str) -> None:
    await conn.execute("update ideas set hidden_as_spam = true where idea_id = $1", idea_id)


async def shipped_at(conn: asyncpg.Connection, idea_id: str) -> datetime | None:
    """When the idea shipped, if it did."""
    moment: datetime | None = await conn.fetchval(
        "select shipped_at from ideas where idea_id = $1", idea_id
    )
    return moment


async def set_support(
    conn: asyncpg.Connection,
    idea_id: str,
    member_id: str,
    *,
    active: bool,
    vote_version: int,
    changed_at: datetime,
) -> bool:
    """Keep the newest vote version of (idea, member); an older one changes nothing.
    Returns whether this change is the newest known."""
    applied = await conn.fetchval(
        """
        insert into supporters (idea_id, member_id, active, vote_version, changed_at)
        values ($1, $2, $3, $4, $5)
        on conflict (idea_id, member_id) do update
            set active = excluded.active, vote_version = excluded.vote_version,
                changed_at = excluded.changed_at
            where supporters.vote_version < excluded.vote_version
        returning true
        """,
        idea_id,
        member_id,
        active,
        vote_version,
        changed_at,
    )
    return bool(applied)


async def active_supporters(conn: asyncpg.Connection, idea_id: str) -> list[str]:
    rows = await conn.fetch(
        "select member_id from supporters where idea_id = $1 and active order by member_id",
        idea_id,
    )
    return [r["member_id"] for r in rows]


# ---- many at once: the votes consumer's runs of VoteCast -----------------


async def set_supports(conn: asyncpg.Connection, changes: Sequence[SupportChange]) -> list[bool]:
    """`set_support` for many (idea, member) in one statement, each at most
    once; for each, whether it is the newest known."""
    rows = await conn.fetch(
        """
        insert into supporters (idea_id, member_id, active, vote_version, changed_at)
        select * from unnest($1::text[], $2::text[], $3::bool[], $4::bigint[],
                             $5::timestamptz[])
        on conflict (idea_id, member_id) do update
            set active = excluded.active, vote_version = excluded.vote_version,
                changed_at = excluded.changed_at
            where supporters.vote_version < excluded.vote_version
        returning idea_id, member_id
        """,
        [c.idea_id for c in changes],
        [c.member_id for c in changes],
        [c.active for c in changes],
        [c.vote_version for c in changes],
        [c.changed_at for c in changes],
    )
    applied = {(row["idea_id"], row["member_id"]) for row in rows}
    return [(c.idea_id, c.member_id) in applied for c in changes]


@dataclass(frozen=True)
class SupportChange:
    idea_id: str
    member_id: str
    active: bool
    vote_version: int
    changed_at: datetime


async def shipped_at_many(conn: asyncpg.Connection, idea_ids: Sequence[str]) -> dict[str, datetime]:
    """When each of these ideas shipped, for those that did."""
    rows = await conn.fetch(
        "select idea_id, shipped_at from ideas where idea_id = any($1::text[]) "
        "and shipped_at is not null",
        sorted(set(idea_ids)),
    )
    return {row["idea_id"]: row["shipped_at"] for row in rows}


async def lock_ideas(conn: asyncpg.Connection, idea_ids: Sequence[str], *, exclusive: bool) -> None:
    """Transaction-level advisory locks on ideas, in id order: shipping an idea
    takes its lock exclusively, handling a vote on it shared, so neither
    misses the other's change (see handlers.py)."""
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(
        f"select {function}(hashtextextended('rewards:idea:' || i, 0)) "
        "from unnest($1::text[]) with ordinality as t(i, n) order by n",
        sorted(set(idea_ids)),
    )
