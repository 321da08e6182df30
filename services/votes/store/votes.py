"""SQL for the vote rows and their history: one member's cast or retract, the
write path's batches, re-weighting, and the locked reads of merges, voids and
tier changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.kit import db, ratelimit
from services.votes import domain
from services.votes.store.record import Record
from services.votes.store.tallies import mark_rows


async def get_vote(
    conn: asyncpg.Connection | asyncpg.Pool,
    idea_id: str,
    member_id: str,
    *,
    for_update: bool = False,
) -> Record | None:
    lock = " for update" if for_update else ""
    return await conn.fetchrow(
        f"select * from votes where idea_id = $1 and member_id = $2{lock}", idea_id, member_id
    )


async def activate_vote(
    conn: asyncpg.Connection,
    idea_id: str,
    member_id: str,
    weight: int,
    tier: str,
    cast_at: datetime | None = None,
) -> Record | None:
    """Make the member's vote on the idea active; None when it already was."""
    return await conn.fetchrow(
        """
        insert into votes (idea_id, member_id, weight, tier, active, cast_at, version)
        values ($1, $2, $3, $4, true, coalesce($5, now()), 1)
        on conflict (idea_id, member_id) do update
            set weight = excluded.weight, tier = excluded.tier, active = true,
                cast_at = excluded.cast_at, retracted_at = null, version = votes.version + 1
            where not votes.active
        returning *
        """,
        idea_id,
        member_id,
        weight,
        tier,
        cast_at,
    )


async def deactivate_vote(conn: asyncpg.Connection, idea_id: str, member_id: str) -> Record:
    return await conn.fetchrow(
        """
        update votes set active = false, retracted_at = now(), version = version + 1
        where idea_id = $1 and member_id = $2 and active
        returning *
        """,
        idea_id,
        member_id,
    )


@dataclass(frozen=True)
class CastCount:
    """The rate limit a batch's casts are counted against: casts are the
    changes whose method is `method`, counted as `action`; a `limit` of 0 or
    less counts nothing."""

    method: str
    action: str
    limit: int
    window_seconds: float


async def read_for_vote_changes(
    conn: asyncpg.Connection,
    idea_ids: Sequence[str],
    member_ids: Sequence[str],
    methods: Sequence[str],
    request_ids: Sequence[str],
    casts: CastCount,
) -> list[Record]:
    """For each (idea, member) of a batch of member casts and retracts, in the
    order given: what the checks need (the idea's state, a ban, the stored
    tier, the weight policy), the current vote, the remembered answer to its
    request_id, its member's rate-limit window, and the transaction's now()
    (which the votes it writes will carry). The same statement counts
    each member's casts that have no remembered answer into the window
    (`rate_attempts` of them, taking it to `rate_hits`; null when nothing was
    counted): the caller gives back those it does not make
    (`ratelimit.uncount`).

    Each lookup is a lateral subquery on its key (`limit 1` keeps the
    planner from turning it back into a join), so every plan probes the
    primary keys once per row. As plain joins, the plan cached for the
    statement hashed whole tables whenever the statistics it was planned with
    said they were small, one scan of the votes table per batch."""
    counting = ratelimit.counting_sql(
        "select member_id, n from attempts", action="$6::text", window="$8::float8"
    )
    return list(
        await conn.fetch(
            f"""
            with looked as (
                select r.n, r.idea_id, r.member_id, r.method,
                       i.idea_id is not null and not i.hidden as idea_known,
                       i.open as idea_open, i.status as idea_status,
                       coalesce((select b.banned from vote_bans b where b.member_id = r.member_id
                                 order by b.id desc limit 1), false) as banned,
                       m.tier as stored_tier,
                       v.weight, v.tier, v.active, v.cast_at, v.retracted_at, v.version,
                       q.response as remembered,
                       (select weights from weight_policy) as policy_weights,
                       now()
                from unnest($1::text[], $2::text[], $3::text[], $4::text[])
                     with ordinality as r(idea_id, member_id, method, request_id, n)
                left join lateral (select * from ideas where idea_id = r.idea_id limit 1) i
                    on true
                left join lateral (
                    select * from members where member_id = r.member_id limit 1
                ) m on true
                left join lateral (
                    select * from votes
                    where idea_id = r.idea_id and member_id = r.member_id limit 1
                ) v on true
                left join lateral (
                    select response from idempotent_requests
                    where r.request_id <> '' and caller = r.member_id
                      and method = r.method and request_id = r.request_id
                    limit 1
                ) q on true
            ), attempts as (
                select member_id, count(*)::int as n from looked
                where $7::int > 0 and method = $5 and remembered is null
                group by member_id
            ), counted as ({counting})
            select l.*, a.n as rate_attempts, c.hits as rate_hits,
                   c.retry_after as rate_retry_after
            from looked l
            left join attempts a on a.member_id = l.member_id
            left join counted c on c.member_id = l.member_id
            order by l.n
            """,
            list(idea_ids),
            list(member_ids),
            list(methods),
            list(request_ids),
            casts.method,
            casts.action,
            casts.limit,
            float(casts.window_seconds),
        )
    )


def activation(votes: Sequence[Mapping[str, Any]]) -> db.Change:
    """The write of votes made active, for `db.write_all`: each as `votes`
    says it will stand (its weight, tier and version; cast now()), sorted by
    the statement into (idea, member) order so concurrent writers lock vote
    rows in one order. A vote is
    written, and counted, only if it still stands as it was read: absent for
    version 1, inactive at the version before otherwise (vote rows are never
    deleted)."""
    return db.Change(
        """
        insert into votes as v (idea_id, member_id, weight, tier, active, cast_at, version)
        select t.idea_id, t.member_id, t.weight, t.tier, true, now(), t.version
        from unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[])
             as t(idea_id, member_id, weight, tier, version)
        order by t.idea_id, t.member_id
        on conflict (idea_id, member_id) do update
            set weight = excluded.weight, tier = excluded.tier, active = true,
                cast_at = excluded.cast_at, retracted_at = null, version = excluded.version
            where not v.active and v.version = excluded.version - 1
        returning 1
        """,
        _columns(votes, "idea_id", "member_id", "weight", "tier", "version"),
    )


def deactivation(votes: Sequence[Mapping[str, Any]]) -> db.Change:
    """The write of votes made inactive (retracted now()), for
    `db.write_all`: each at the version `votes` gives, locked by the
    statement in (idea, member) order. A vote is written, and counted, only
    if it is still active at the version before."""
    return db.Change(
        """
        update votes v set active = false, retracted_at = now(), version = t.version
        from (
            select v.idea_id, v.member_id, t.version
            from votes v
            join unnest($1::text[], $2::text[], $3::bigint[]) as t(idea_id, member_id, version)
                 on v.idea_id = t.idea_id and v.member_id = t.member_id
            where v.active and v.version = t.version - 1
            order by v.idea_id, v.member_id
            for update of v
        ) t
        where v.idea_id = t.idea_id and v.member_id = t.member_id
          and v.active and v.version = t.version - 1
        returning 1
        """,
        _columns(votes, "idea_id", "member_id", "version"),
    )


def _columns(rows: Sequence[Mapping[str, Any]], *names: str) -> tuple[list[Any], ...]:
    return tuple([row[name] for row in rows] for name in names)


def vote_change_rows(
    entries: Sequence[HistoryEntry], marks: Sequence[tuple[str, domain.AddedVote | None]]
) -> list[db.Rows]:
    """The history entries and tally marks of many changed votes, for
    `db.write_all` beside the rest of their write (see `mark_rows`)."""
    return [history_rows(entries), mark_rows(marks)]


async def set_vote_weight(
    conn: asyncpg.Connection, idea_id: str, member_id: str, weight: int, tier: str
) -> Record:
    return await conn.fetchrow(
        "update votes set weight = $3, tier = $4 where idea_id = $1 and member_id = $2 returning *",
        idea_id,
        member_id,
        weight,
        tier,
    )


async def active_votes_of_member(
    conn: asyncpg.Connection, member_id: str, *, open_ideas_only: bool
) -> list[Record]:
    """Locked, in idea order."""
    open_filter = "and i.open" if open_ideas_only else ""
    return list(
        await conn.fetch(
            f"""
            select v.* from votes v join ideas i using (idea_id)
            where v.member_id = $1 and v.active {open_filter}
            order by v.idea_id
            for update of v
            """,
            member_id,
        )
    )


async def active_votes_of_ideas(conn: asyncpg.Connection, idea_ids: Sequence[str]) -> list[Record]:
    """Locked, in (idea, member) order."""
    return list(
        await conn.fetch(
            "select * from votes where idea_id = any($1::text[]) and active "
            "order by idea_id, member_id for update",
            list(idea_ids),
        )
    )


async def voters_of(conn: asyncpg.Connection, idea_id: str) -> list[str]:
    rows = await conn.fetch("select member_id from votes where idea_id = $1 and active", idea_id)
    return [row["member_id"] for row in rows]


@dataclass(frozen=True)
class HistoryEntry:
    idea_id: str
    member_id: str
    action: int
    cause: int
    weight: int
    previous_weight: int
    tier: str
    actor_id: str = ""
    note: str = ""


async def add_history(conn: asyncpg.Connection, entries: Sequence[HistoryEntry]) -> None:
    await db.write_all(conn, [history_rows(entries)])


def history_rows(entries: Sequence[HistoryEntry]) -> db.Rows:
    return db.Rows(
        "vote_history",
        (
            ("idea_id", "text"),
            ("member_id", "text"),
            ("action", "smallint"),
            ("cause", "smallint"),
            ("weight", "bigint"),
            ("previous_weight", "bigint"),
            ("tier", "text"),
            ("actor_id", "text"),
            ("note", "text"),
        ),
        (
            [e.idea_id for e in entries],
            [e.member_id for e in entries],
            [e.action for e in entries],
            [e.cause for e in entries],
            [e.weight for e in entries],
            [e.previous_weight for e in entries],
            [e.tier for e in entries],
            [e.actor_id for e in entries],
            [e.note for e in entries],
        ),
    )
