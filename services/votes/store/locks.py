"""The transaction-level advisory locks writers take, and their keys. The
order they are taken in: services/votes/store/__init__.py."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg


async def _lock(conn: asyncpg.Connection, key: str, *, exclusive: bool) -> None:
    function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(f"select {function}(hashtextextended($1, 0))", key)


async def lock_policy(conn: asyncpg.Connection, *, exclusive: bool = False) -> None:
    await _lock(conn, policy_key(), exclusive=exclusive)


async def lock_ideas(
    conn: asyncpg.Connection, idea_ids: Iterable[str], *, exclusive: bool = False
) -> None:
    for idea_id in sorted(set(idea_ids)):
        await _lock(conn, idea_key(idea_id), exclusive=exclusive)


async def lock_member(conn: asyncpg.Connection, member_id: str, *, exclusive: bool = False) -> None:
    await _lock(conn, member_key(member_id), exclusive=exclusive)


async def lock_keys(
    conn: asyncpg.Connection, exclusive: Sequence[str], shared: Sequence[str]
) -> None:
    """Take transaction-level advisory locks in one statement, in the order given:
    `exclusive` first, then `shared`. The caller passes them in the global
    order (request keys, the policy, ideas sorted, members sorted)."""
    await conn.execute(
        """
        select case when t.exclusive then pg_advisory_xact_lock(hashtextextended(t.key, 0))
                    else pg_advisory_xact_lock_shared(hashtextextended(t.key, 0)) end
        from unnest($1::text[], $2::bool[]) with ordinality as t(key, exclusive, n)
        """,
        [*exclusive, *shared],
        [True] * len(exclusive) + [False] * len(shared),
    )


def policy_key() -> str:
    return "votes:policy"


def idea_key(idea_id: str) -> str:
    return f"votes:idea:{idea_id}"


def member_key(member_id: str) -> str:
    return f"votes:member:{member_id}"
