"""SQL for notifications. Writers run in the inbox transaction of the event
that caused them; a NOTIFY, delivered at commit, wakes the live watchers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg

from services.votes import domain

CHANNEL = "cocreate_votes_notifications"
# The NOTIFY payload is a JSON list of the members told. Payloads are limited
# to 8000 bytes; past this the payload is empty and every watcher looks.
_MAX_PAYLOAD = 7000

Record = Any  # asyncpg.Record, untyped


@dataclass(frozen=True)
class NewNotification:
    kind: int
    text: str
    about: str
    idea_id: str = ""
    new_status: int = 0
    release_id: str = ""
    target_idea_id: str = ""
    points: int = 0
    tier: str = ""


async def supporters(conn: asyncpg.Connection, idea_id: str) -> list[str]:
    """The members with an active vote on the idea."""
    rows = await conn.fetch(
        "select member_id from votes where idea_id = $1 and active order by member_id", idea_id
    )
    return [row["member_id"] for row in rows]


async def merged_supporters(conn: asyncpg.Connection, source_id: str) -> list[str]:
    """The members who supported a merged idea: their votes are still on it,
    or were moved from it by the merge."""
    rows = await conn.fetch(
        """
        select member_id from votes where idea_id = $1 and active
        union
        select member_id from vote_history
        where idea_id = $1 and action = $2 and cause = $3
        order by member_id
        """,
        source_id,
        domain.ACTION_RETRACT,
        domain.CAUSE_MERGE,
    )
    return [row["member_id"] for row in rows]


async def newer_status(
    conn: asyncpg.Connection, idea_id: str, version: int, told: NewNotification | None
) -> bool:
    """Record `version` as the newest status of the idea, with what its
    supporters are told of it (None: nothing); False when a newer (or the
    same) one was recorded already."""
    applied = await conn.fetchval(
        """
        insert into notified_idea_versions (idea_id, version, told) values ($1, $2, $3)
        on conflict (idea_id) do update set version = excluded.version, told = excluded.told
            where notified_idea_versions.version < excluded.version
        returning true
        """,
        idea_id,
        version,
        None if told is None else asdict(told),
    )
    return bool(applied)


async def told_status(conn: asyncpg.Connection, idea_id: str) -> NewNotification | None:
    """What the idea's supporters were told of its newest status, if anything."""
    told = await conn.fetchval(
        "select told from notified_idea_versions where idea_id = $1", idea_id
    )
    return None if told is None else NewNotification(**told)


async def add(conn: asyncpg.Connection, member_ids: Sequence[str], note: NewNotification) -> int:
    """Tell each member once; how many were told now. Wakes their watchers at commit."""
    if not member_ids:
        return 0
    rows = await conn.fetch(
        """
        insert into notifications (member_id, kind, text, about, idea_id, new_status,
            release_id, target_idea_id, points, tier)
        select m, $2, $3, $4, $5, $6, $7, $8, $9, $10 from unnest($1::text[]) as m
        on conflict (member_id, about) do nothing
        returning member_id
        """,
        list(member_ids),
        note.kind,
        note.text,
        note.about,
        note.idea_id,
        note.new_status,
        note.release_id,
        note.target_idea_id,
        note.points,
        note.tier,
    )
    told = sorted({row["member_id"] for row in rows})
    if told:
        payload = json.dumps(told, separators=(",", ":"))
        await conn.execute(
            "select pg_notify($1, $2)", CHANNEL, payload if len(payload) <= _MAX_PAYLOAD else ""
        )
    return len(rows)


async def page(
    conn: asyncpg.Connection | asyncpg.Pool,
    member_id: str,
    *,
    unread_only: bool,
    after: tuple[bool, int] | None,
    limit: int,
) -> list[Record]:
    """Unread first, then newest; `after` is the (read, id) of the last row seen."""
    rows: list[Record] = await conn.fetch(
        """
        select * from notifications
        where member_id = $1 and (not $2 or not read)
          and ($3::boolean is null or read > $3 or (read = $3 and id < $4))
        order by read, id desc
        limit $5
        """,
        member_id,
        unread_only,
        after[0] if after else None,
        after[1] if after else 0,
        limit,
    )
    return rows


async def unread_count(conn: asyncpg.Connection | asyncpg.Pool, member_id: str) -> int:
    count: int = await conn.fetchval(
        "select count(*) from notifications where member_id = $1 and not read", member_id
    )
    return count


async def mark_read(conn: asyncpg.Connection, member_id: str, ids: Sequence[int] | None) -> int:
    """Mark the member's notifications with these ids (None: all) read; how many changed."""
    rows = await conn.fetch(
        """
        update notifications set read = true, read_at = now()
        where member_id = $1 and not read and ($2::bigint[] is null or id = any($2::bigint[]))
        returning id
        """,
        member_id,
        list(ids) if ids is not None else None,
    )
    return len(rows)


async def pending(
    conn: asyncpg.Connection | asyncpg.Pool,
    member_id: str,
    last_id: int,
    *,
    sent: Sequence[int],
    recent_seconds: float,
    limit: int,
) -> list[Record]:
    """The member's notifications not sent yet, oldest first: those after
    `last_id`, and recent ones not in `sent` (a transaction that took a lower
    id may commit after a higher one was sent)."""
    rows: list[Record] = await conn.fetch(
        """
        select * from notifications
        where member_id = $1
          and (id > $2 or (created_at > now() - make_interval(secs => $3)
                           and id <> all($4::bigint[])))
        order by id limit $5
        """,
        member_id,
        last_id,
        recent_seconds,
        list(sent),
        limit,
    )
    return rows


async def recent(
    conn: asyncpg.Connection | asyncpg.Pool,
    member_id: str,
    up_to_id: int,
    *,
    recent_seconds: float,
) -> list[Record]:
    """The member's recent notifications up to an id."""
    rows: list[Record] = await conn.fetch(
        "select id, created_at from notifications where member_id = $1 and id <= $2 "
        "and created_at > now() - make_interval(secs => $3)",
        member_id,
        up_to_id,
        recent_seconds,
    )
    return rows


async def latest_id(conn: asyncpg.Connection | asyncpg.Pool, member_id: str) -> int:
    found: int | None = await conn.fetchval(
        "select max(id) from notifications where member_id = $1", member_id
    )
    return found or 0
