"""SQL for the votes service's tables. Every function runs on the caller's
connection, inside the caller's transaction.

Locks: writers take transaction-level advisory locks in one order — the
weight policy, then ideas (sorted), then the member — shared where they only
need the thing to stay as read (a cast: the policy, the idea's state, the
member's tier) and exclusive where they change it (a policy update, a status
change or merge, a tier change, a void or a ban's lift). Shared locks do not
wait for each other, so thousands of casts on one idea proceed side by side.
A merge holds its voters' member rows (not one advisory lock per voter, which
would fill the lock table on a popular idea), so a tier change of one of them
waits for it. Vote rows come last: a cast locks only its own (idea, member)
row; the few bulk writers lock theirs in (idea_id, member_id) order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from cocreate.ideas.v1 import idea_status_pb2

from services.votes import domain

TALLY_DIRTY_CHANNEL = "cocreate_votes_tally_dirty"

Record = Any  # asyncpg.Record, untyped


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


# Policy


@dataclass(frozen=True)
class StoredPolicy:
    policy: domain.WeightPolicy
    version: int
    updated_at: datetime
    updated_by: str


def policy_of(weights: str) -> domain.WeightPolicy:
    """The policy from its stored weights column."""
    return domain.WeightPolicy({k: int(v) for k, v in json.loads(weights).items()})


async def get_policy(conn: asyncpg.Connection | asyncpg.Pool) -> StoredPolicy:
    row = await conn.fetchrow("select * from weight_policy")
    return StoredPolicy(
        policy=policy_of(row["weights"]),
        version=row["version"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


async def replace_policy(
    conn: asyncpg.Connection, weights: dict[str, int], updated_by: str
) -> StoredPolicy:
    await conn.execute(
        "update weight_policy set weights = $1::jsonb, version = version + 1, "
        "updated_at = now(), updated_by = $2",
        json.dumps(weights, sort_keys=True),
        updated_by,
    )
    return await get_policy(conn)


async def reweight_to_policy(conn: asyncpg.Connection, policy: domain.WeightPolicy) -> list[Record]:
    """Give every active vote on an open idea its tier's weight under `policy`;
    returns the changed votes with their previous weight."""
    return list(
        await conn.fetch(
            """
            with target as (
                select v.idea_id, v.member_id, v.weight as previous_weight,
                       coalesce(($1::jsonb ->> v.tier)::bigint, $2) as weight
                from votes v join ideas i using (idea_id)
                where v.active and i.open
                order by v.idea_id, v.member_id
                for update of v
            )
            update votes v set weight = t.weight
            from target t
            where v.idea_id = t.idea_id and v.member_id = t.member_id
              and v.weight <> t.weight
            returning v.idea_id, v.member_id, v.tier, v.weight, t.previous_weight
            """,
            json.dumps(dict(policy.weights)),
            policy.weight_of(policy.lowest_tier),
        )
    )


# Ideas and members


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


# Votes


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


async def read_for_vote_changes(
    conn: asyncpg.Connection,
    idea_ids: Sequence[str],
    member_ids: Sequence[str],
    methods: Sequence[str],
    request_ids: Sequence[str],
) -> list[Record]:
    """For each (idea, member) of a batch of member casts and retracts, in the
    order given: what the checks need (the idea's state, a ban, the stored
    tier, the weight policy), the current vote, and the remembered answer to
    its request_id."""
    return list(
        await conn.fetch(
            """
            select r.n, r.idea_id, r.member_id,
                   i.idea_id is not null and not i.hidden as idea_known, i.open as idea_open,
                   i.status as idea_status,
                   coalesce((select b.banned from vote_bans b where b.member_id = r.member_id
                             order by b.id desc limit 1), false) as banned,
                   m.tier as stored_tier,
                   v.weight, v.tier, v.active, v.cast_at, v.retracted_at, v.version,
                   q.response as remembered,
                   (select weights from weight_policy) as policy_weights
            from unnest($1::text[], $2::text[], $3::text[], $4::text[])
                 with ordinality as r(idea_id, member_id, method, request_id, n)
            left join ideas i on i.idea_id = r.idea_id
            left join members m on m.member_id = r.member_id
            left join votes v on v.idea_id = r.idea_id and v.member_id = r.member_id
            left join idempotent_requests q
                   on r.request_id <> '' and q.caller = r.member_id
                  and q.method = r.method and q.request_id = r.request_id
            order by r.n
            """,
            list(idea_ids),
            list(member_ids),
            list(methods),
            list(request_ids),
        )
    )


async def activate_votes(
    conn: asyncpg.Connection,
    idea_ids: Sequence[str],
    member_ids: Sequence[str],
    weights: Sequence[int],
    tiers: Sequence[str],
) -> list[Record]:
    """`activate_vote` for many (idea, member) pairs, each at most once, in
    (idea, member) order so concurrent writers lock vote rows in one order.
    Returns the votes that changed; an already active vote is left as it is."""
    if not idea_ids:
        return []
    return list(
        await conn.fetch(
            """
            insert into votes as v (idea_id, member_id, weight, tier, active, cast_at, version)
            select t.idea_id, t.member_id, t.weight, t.tier, true, now(), 1
            from unnest($1::text[], $2::text[], $3::bigint[], $4::text[])
                 as t(idea_id, member_id, weight, tier)
            order by t.idea_id, t.member_id
            on conflict (idea_id, member_id) do update
                set weight = excluded.weight, tier = excluded.tier, active = true,
                    cast_at = excluded.cast_at, retracted_at = null, version = v.version + 1
                where not v.active
            returning v.*
            """,
            list(idea_ids),
            list(member_ids),
            list(weights),
            list(tiers),
        )
    )


async def deactivate_votes(
    conn: asyncpg.Connection, idea_ids: Sequence[str], member_ids: Sequence[str]
) -> list[Record]:
    """`deactivate_vote` for many (idea, member) pairs; the votes that changed."""
    if not idea_ids:
        return []
    return list(
        await conn.fetch(
            """
            with target as (
                select v.idea_id, v.member_id
                from votes v join unnest($1::text[], $2::text[]) as t(idea_id, member_id)
                     on v.idea_id = t.idea_id and v.member_id = t.member_id
                where v.active
                order by v.idea_id, v.member_id
                for update of v
            )
            update votes v set active = false, retracted_at = now(), version = v.version + 1
            from target t
            where v.idea_id = t.idea_id and v.member_id = t.member_id and v.active
            returning v.*
            """,
            list(idea_ids),
            list(member_ids),
        )
    )


async def get_votes(
    conn: asyncpg.Connection, idea_ids: Sequence[str], member_ids: Sequence[str]
) -> dict[tuple[str, str], Record]:
    """The current votes of (idea, member) pairs, by pair."""
    rows = await conn.fetch(
        "select v.* from votes v join unnest($1::text[], $2::text[]) as t(idea_id, member_id) "
        "on v.idea_id = t.idea_id and v.member_id = t.member_id",
        list(idea_ids),
        list(member_ids),
    )
    return {(row["idea_id"], row["member_id"]): row for row in rows}


async def record_vote_changes(conn: asyncpg.Connection, entries: Sequence[HistoryEntry]) -> None:
    """History entries and tally marks for many changed votes in one statement
    (and one NOTIFY for the folder)."""
    if not entries:
        return
    await conn.execute(
        """
        with history as (
            insert into vote_history (idea_id, member_id, action, cause, weight,
                                      previous_weight, tier, actor_id, note)
            select * from unnest($1::text[], $2::text[], $3::smallint[], $4::smallint[],
                                 $5::bigint[], $6::bigint[], $7::text[], $8::text[], $9::text[])
        ), marks as (
            insert into tally_dirty (idea_id) select distinct unnest($1::text[])
        )
        select pg_notify($10, '')
        """,
        [e.idea_id for e in entries],
        [e.member_id for e in entries],
        [e.action for e in entries],
        [e.cause for e in entries],
        [e.weight for e in entries],
        [e.previous_weight for e in entries],
        [e.tier for e in entries],
        [e.actor_id for e in entries],
        [e.note for e in entries],
        TALLY_DIRTY_CHANNEL,
    )


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
    if not entries:
        return
    await conn.executemany(
        "insert into vote_history (idea_id, member_id, action, cause, weight, "
        "previous_weight, tier, actor_id, note) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        [
            (
                e.idea_id,
                e.member_id,
                e.action,
                e.cause,
                e.weight,
                e.previous_weight,
                e.tier,
                e.actor_id,
                e.note,
            )
            for e in entries
        ],
    )


async def mark_dirty(conn: asyncpg.Connection, idea_ids: Iterable[str]) -> None:
    """Note that these ideas' tallies must be folded again (append-only: no
    two writers share a row)."""
    ids = sorted(set(idea_ids))
    if not ids:
        return
    await conn.execute("insert into tally_dirty (idea_id) select unnest($1::text[])", ids)
    await conn.execute("select pg_notify($1, '')", TALLY_DIRTY_CHANNEL)


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


# Tallies


async def take_dirty(conn: asyncpg.Connection, limit: int) -> list[str]:
    """Remove up to `limit` committed marks; the ideas they name."""
    rows = await conn.fetch(
        "delete from tally_dirty where id in "
        "(select id from tally_dirty order by id limit $1) returning idea_id",
        limit,
    )
    return sorted({row["idea_id"] for row in rows})


async def record_fold(
    conn: asyncpg.Connection, folded_by: str, started_at: datetime, ideas: int
) -> None:
    """Note a fold, ending now (and forget folds older than a day)."""
    await conn.execute(
        "with forgotten as (delete from tally_folds where finished_at < now() - interval '1 day') "
        "insert into tally_folds (folded_by, started_at, finished_at, ideas) "
        "values ($1, $2, clock_timestamp(), $3)",
        folded_by,
        started_at,
        ideas,
    )


async def oldest_mark_age_seconds(pool: asyncpg.Pool) -> float:
    """Seconds since the oldest mark still waiting to be folded was written; 0 when none waits."""
    age = await pool.fetchval(
        "select greatest(extract(epoch from clock_timestamp() - marked_at), 0)::float8 "
        "from tally_dirty order by id limit 1"
    )
    return float(age or 0.0)


async def tier_groups(
    conn: asyncpg.Connection, idea_ids: Sequence[str]
) -> dict[str, list[domain.TierGroup]]:
    rows = await conn.fetch(
        """
        with v as (
            select idea_id, tier, weight,
                   extract(epoch from cast_at - $2::timestamptz)::float8 / $3 as x
            from votes where idea_id = any($1::text[]) and active
        ), top as (
            select idea_id, max(x) as top from v group by idea_id
        )
        select v.idea_id, v.tier, count(*) as voters, sum(v.weight)::bigint as score,
               t.top, sum(v.weight * exp(v.x - t.top)) as scaled
        from v join top t using (idea_id)
        group by v.idea_id, v.tier, t.top
        """,
        list(idea_ids),
        domain.EPOCH,
        domain.TAU_SECONDS,
    )
    groups: dict[str, list[domain.TierGroup]] = {idea_id: [] for idea_id in idea_ids}
    for row in rows:
        groups[row["idea_id"]].append(
            domain.TierGroup(
                tier=row["tier"],
                voters=row["voters"],
                score=row["score"],
                top=row["top"],
                scaled=row["scaled"],
            )
        )
    return groups


async def save_tallies(conn: asyncpg.Connection, tallies: Sequence[domain.Tally]) -> list[Record]:
    """Store folded tallies, each with its next version, in one statement;
    returns the stored rows."""
    return list(
        await conn.fetch(
            """
            insert into tallies as t (idea_id, version, weighted_score, voter_count,
                                      voters_by_tier, trending_score)
            select idea_id, 1, score, voters, by_tier::jsonb, trending
            from unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::float8[])
                 as u(idea_id, score, voters, by_tier, trending)
            order by idea_id
            on conflict (idea_id) do update
                set version = t.version + 1, weighted_score = excluded.weighted_score,
                    voter_count = excluded.voter_count, voters_by_tier = excluded.voters_by_tier,
                    trending_score = excluded.trending_score, updated_at = now()
            returning *
            """,
            [tally.idea_id for tally in tallies],
            [tally.weighted_score for tally in tallies],
            [tally.voter_count for tally in tallies],
            [json.dumps(tally.voters_by_tier, sort_keys=True) for tally in tallies],
            [tally.trending_score for tally in tallies],
        )
    )


async def get_tallies(
    conn: asyncpg.Connection | asyncpg.Pool, idea_ids: Sequence[str]
) -> dict[str, Record]:
    """Known ideas with their tally (the tally columns null before the first vote)."""
    rows = await conn.fetch(
        """
        select i.idea_id, i.open, i.hidden, i.updated_at as idea_updated_at, t.version,
               t.weighted_score, t.voter_count, t.voters_by_tier, t.trending_score,
               t.updated_at
        from ideas i left join tallies t using (idea_id)
        where i.idea_id = any($1::text[])
        """,
        list(idea_ids),
    )
    return {row["idea_id"]: row for row in rows}


# Lists


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


def tier_counts(voters_by_tier: str | None) -> dict[str, int]:
    """The voters-per-tier column as a dict."""
    return {k: int(v) for k, v in json.loads(voters_by_tier or "{}").items()}
