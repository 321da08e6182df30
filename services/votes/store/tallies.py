"""SQL for the tallies: marks of the ideas whose tally must be folded again,
the fold's sums per tier, and the stored tallies."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

import asyncpg

from services.kit import db
from services.votes import domain
from services.votes.store.record import Record

TALLY_DIRTY_CHANNEL = "cocreate_votes_tally_dirty"


async def mark_dirty(conn: asyncpg.Connection, idea_ids: Iterable[str]) -> None:
    """Note that these ideas' tallies must be folded again (append-only: no
    two writers share a row)."""
    await db.write_all(conn, [mark_rows([(idea_id, None) for idea_id in sorted(set(idea_ids))])])


def mark_rows(marks: Sequence[tuple[str, domain.AddedVote | None]]) -> db.Rows:
    """Tally marks for `db.write_all`; they wake the folder once committed. A
    mark is an idea and what a cast added to its tally, or None: recount the
    idea."""
    return db.Rows(
        "tally_dirty",
        (("idea_id", "text"), ("weight", "bigint"), ("tier", "text"), ("trend", "float8")),
        (
            [idea_id for idea_id, _ in marks],
            [added.weight if added else None for _, added in marks],
            [added.tier if added else None for _, added in marks],
            [added.trend if added else None for _, added in marks],
        ),
        notify=TALLY_DIRTY_CHANNEL,
    )


async def take_marks(
    conn: asyncpg.Connection, limit: int
) -> dict[str, list[domain.AddedVote] | None]:
    """Remove up to `limit` committed marks, oldest first: for each idea they
    name, the votes its casts added, or None when a mark asks for a recount."""
    rows = await conn.fetch(
        "delete from tally_dirty where id in "
        "(select id from tally_dirty order by id limit $1) "
        "returning id, idea_id, weight, tier, trend",
        limit,
    )
    marks: dict[str, list[domain.AddedVote] | None] = {}
    for row in sorted(rows, key=lambda row: row["id"]):
        added = marks.setdefault(row["idea_id"], [])
        if row["weight"] is None:
            marks[row["idea_id"]] = None
        elif added is not None:
            added.append(domain.AddedVote(row["weight"], row["tier"], row["trend"]))
    return dict(sorted(marks.items()))


async def stored_tallies(
    conn: asyncpg.Connection, idea_ids: Sequence[str]
) -> dict[str, domain.Tally]:
    """The tallies the last folds stored for these ideas (zero for an idea
    never folded)."""
    rows = await conn.fetch(
        "select idea_id, weighted_score, voter_count, voters_by_tier, trending_score "
        "from tallies where idea_id = any($1::text[])",
        list(idea_ids),
    )
    stored = {idea_id: domain.Tally(idea_id) for idea_id in idea_ids}
    for row in rows:
        stored[row["idea_id"]] = domain.Tally(
            row["idea_id"],
            row["weighted_score"],
            row["voter_count"],
            tier_counts(row["voters_by_tier"]),
            row["trending_score"],
        )
    return stored


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


async def recount(
    conn: asyncpg.Connection, idea_ids: Sequence[str]
) -> dict[str, list[domain.TierGroup]]:
    """Each idea's active votes summed per tier, and every mark of these ideas
    still waiting removed, in one statement: so in one snapshot, and a cast
    the sums include never has its mark added again by the next fold. The
    votes are read idea by idea (a lateral subquery), whatever the statistics
    the cached plan was made with say about the table's size."""
    if not idea_ids:
        return {}
    rows = await conn.fetch(
        """
        with taken as (
            delete from tally_dirty where idea_id = any($1::text[])
        ), v as (
            select v.idea_id, v.tier, v.weight,
                   extract(epoch from v.cast_at - $2::timestamptz)::float8 / $3 as x
            from unnest($1::text[]) as d(idea_id)
            cross join lateral (
                select idea_id, tier, weight, cast_at from votes
                where idea_id = d.idea_id and active
                offset 0  -- a fence: kept a per-idea lookup, not turned into a join
            ) v
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


def tier_counts(voters_by_tier: Mapping[str, int] | None) -> dict[str, int]:
    """The voters-per-tier column (null before the first vote) as a dict."""
    return dict(voters_by_tier or {})
