"""SQL for iterations, their ideas and releases. Every function runs on the
caller's connection, so a cut's status changes, release and event share one
transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import asyncpg

from services.ideas.releases.rules import Outcome, State

_ITERATION_COLUMNS = """
    it.*,
    (select count(*) from iteration_ideas x
      where x.iteration_id = it.id and x.outcome <> 4) as idea_count,
    (select count(*) from iteration_ideas x
      where x.iteration_id = it.id and x.done and x.outcome <> 4) as done_count
"""


# Iterations


async def insert_iteration(
    conn: asyncpg.Connection,
    *,
    product_id: str,
    name: str,
    start: date,
    end: date,
    created_by: str,
) -> asyncpg.Record | None:
    """The new iteration; None when the product has one of that name."""
    iteration_id = await conn.fetchval(
        """
        insert into iterations (id, product_id, name, state, start_date, end_date, created_by)
        values ($1, $2, $3, $4, $5, $6, $7)
        on conflict (product_id, lower(name)) do nothing returning id
        """,
        uuid.uuid4(),
        uuid.UUID(product_id),
        name,
        int(State.PLANNING),
        start,
        end,
        created_by,
    )
    if iteration_id is None:
        return None
    return await iteration(conn, str(iteration_id))


async def iteration(conn: asyncpg.Connection, iteration_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select {_ITERATION_COLUMNS} from iterations it where it.id = $1",
        uuid.UUID(iteration_id),
    )
    return row


async def iteration_by_name(
    conn: asyncpg.Connection, product_id: str, name: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select {_ITERATION_COLUMNS} from iterations it "
        "where it.product_id = $1 and lower(it.name) = lower($2)",
        uuid.UUID(product_id),
        name,
    )
    return row


async def lock_iteration(conn: asyncpg.Connection, iteration_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from iterations where id = $1 for update", uuid.UUID(iteration_id)
    )
    return row


async def set_state(
    conn: asyncpg.Connection, iteration_id: str, state: State, release_id: str | None = None
) -> None:
    await conn.execute(
        "update iterations set state = $2, release_id = coalesce($3, release_id), "
        "updated_at = now() where id = $1",
        uuid.UUID(iteration_id),
        int(state),
        uuid.UUID(release_id) if release_id else None,
    )


async def list_iterations(
    conn: asyncpg.Connection,
    *,
    product_id: str,
    states: Sequence[int],
    after: Mapping[str, Any] | None,
    limit: int,
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        select {_ITERATION_COLUMNS} from iterations it
        where ($1::uuid is null or it.product_id = $1)
          and (cardinality($2::smallint[]) = 0 or it.state = any($2::smallint[]))
          and ($3::date is null or (it.start_date, it.id) < ($3, $4::uuid))
        order by it.start_date desc, it.id desc
        limit $5
        """,
        uuid.UUID(product_id) if product_id else None,
        list(states),
        date.fromisoformat(after["start"]) if after else None,
        uuid.UUID(after["id"]) if after else None,
        limit,
    )
    return rows


# The ideas of an iteration


_ITEM_COLUMNS = """
    x.iteration_id, x.idea_id, x.outcome, x.done, x.planned_by, x.planned_at,
    i.number, i.title, i.status, i.author_id, i.product_id, t.weighted_score,
    t.voter_count, t.voters_by_tier, i.hidden
"""
_ITEM_FROM = """
    from iteration_ideas x join ideas i on i.id = x.idea_id
    join idea_tallies t on t.idea_id = x.idea_id
"""


async def item(conn: asyncpg.Connection, iteration_id: str, idea_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select {_ITEM_COLUMNS} {_ITEM_FROM} where x.iteration_id = $1 and x.idea_id = $2",
        uuid.UUID(iteration_id),
        uuid.UUID(idea_id),
    )
    return row


async def open_iteration_of(conn: asyncpg.Connection, idea_id: str) -> str | None:
    """The open iteration the idea is planned in, if any."""
    found = await conn.fetchval(
        "select iteration_id from iteration_ideas where idea_id = $1 and outcome = $2",
        uuid.UUID(idea_id),
        int(Outcome.PLANNED),
    )
    return str(found) if found else None


async def plan(conn: asyncpg.Connection, iteration_id: str, idea_id: str, planned_by: str) -> None:
    await conn.execute(
        """
        insert into iteration_ideas (iteration_id, idea_id, outcome, done, planned_by)
        values ($1, $2, $3, false, $4)
        on conflict (iteration_id, idea_id) do update
            set outcome = excluded.outcome, done = false, planned_by = excluded.planned_by,
                planned_at = now(), done_at = null
        """,
        uuid.UUID(iteration_id),
        uuid.UUID(idea_id),
        int(Outcome.PLANNED),
        planned_by,
    )


async def unplan(conn: asyncpg.Connection, iteration_id: str, idea_id: str) -> bool:
    deleted = await conn.fetchval(
        "delete from iteration_ideas where iteration_id = $1 and idea_id = $2 and outcome = $3 "
        "returning true",
        uuid.UUID(iteration_id),
        uuid.UUID(idea_id),
        int(Outcome.PLANNED),
    )
    return bool(deleted)


async def set_done(conn: asyncpg.Connection, iteration_id: str, idea_id: str, done: bool) -> bool:
    changed = await conn.fetchval(
        "update iteration_ideas set done = $3, done_at = case when $3 then now() end "
        "where iteration_id = $1 and idea_id = $2 and outcome = $4 returning true",
        uuid.UUID(iteration_id),
        uuid.UUID(idea_id),
        done,
        int(Outcome.PLANNED),
    )
    return bool(changed)


async def list_items(
    conn: asyncpg.Connection, iteration_id: str, after: Mapping[str, Any] | None, limit: int
) -> list[asyncpg.Record]:
    """Highest score first, ties by idea id."""
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        select {_ITEM_COLUMNS} {_ITEM_FROM}
        where x.iteration_id = $1
          and ($2::bigint is null or (t.weighted_score, i.id) < ($2, $3::uuid))
        order by t.weighted_score desc, i.id desc
        limit $4
        """,
        uuid.UUID(iteration_id),
        int(after["score"]) if after else None,
        uuid.UUID(after["id"]) if after else None,
        limit,
    )
    return rows


async def open_items_locked(conn: asyncpg.Connection, iteration_id: str) -> list[asyncpg.Record]:
    """The iteration's planned ideas, their idea rows locked in id order."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        select x.idea_id, x.done, i.status from iteration_ideas x
        join ideas i on i.id = x.idea_id
        where x.iteration_id = $1 and x.outcome = $2
        order by x.idea_id
        for update of i
        """,
        uuid.UUID(iteration_id),
        int(Outcome.PLANNED),
    )
    return rows


async def set_outcome(
    conn: asyncpg.Connection, iteration_id: str, idea_ids: Sequence[str], outcome: Outcome
) -> None:
    await conn.execute(
        "update iteration_ideas set outcome = $3 where iteration_id = $1 "
        "and idea_id = any($2::uuid[])",
        uuid.UUID(iteration_id),
        [uuid.UUID(i) for i in idea_ids],
        int(outcome),
    )


async def carry_over(
    conn: asyncpg.Connection, from_iteration: str, to_iteration: str, idea_ids: Sequence[str]
) -> None:
    """Plan rolled-over ideas into the next iteration (not done there), keeping
    who planned them."""
    await conn.execute(
        """
        insert into iteration_ideas (iteration_id, idea_id, outcome, done, planned_by)
        select $2, x.idea_id, $4, false, x.planned_by from iteration_ideas x
        where x.iteration_id = $1 and x.idea_id = any($3::uuid[])
        on conflict (iteration_id, idea_id) do update
            set outcome = excluded.outcome, done = false, done_at = null
        """,
        uuid.UUID(from_iteration),
        uuid.UUID(to_iteration),
        [uuid.UUID(i) for i in idea_ids],
        int(Outcome.PLANNED),
    )


# Releases


async def release_by_version(
    conn: asyncpg.Connection, product_id: str, version: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "select * from releases where product_id = $1 and lower(version) = lower($2)",
        uuid.UUID(product_id),
        version,
    )
    return row


async def insert_release(
    conn: asyncpg.Connection,
    *,
    release_id: str,
    iteration_id: str,
    product_id: str,
    version: str,
    next_iteration_id: str | None,
    rolled_over: Sequence[str],
    dropped: Sequence[str],
    published_by: str,
) -> None:
    await conn.execute(
        """
        insert into releases (id, iteration_id, product_id, version, next_iteration_id,
            rolled_over_idea_ids, dropped_idea_ids, published_by)
        values ($1, $2, $3, $4, $5, $6, $7, $8)
        """,
        uuid.UUID(release_id),
        uuid.UUID(iteration_id),
        uuid.UUID(product_id),
        version,
        uuid.UUID(next_iteration_id) if next_iteration_id else None,
        [uuid.UUID(i) for i in rolled_over],
        [uuid.UUID(i) for i in dropped],
        published_by,
    )


async def snapshot_shipped(
    conn: asyncpg.Connection, release_id: str, idea_ids: Sequence[str]
) -> None:
    """Keep the shipped ideas' title, author and tally as they are at the cut."""
    await conn.execute(
        """
        insert into release_ideas (release_id, idea_id, number, title, author_id,
            weighted_score, voter_count, voters_by_tier)
        select $1, i.id, i.number, i.title, i.author_id, t.weighted_score, t.voter_count,
               t.voters_by_tier
        from ideas i join idea_tallies t on t.idea_id = i.id where i.id = any($2::uuid[])
        """,
        uuid.UUID(release_id),
        [uuid.UUID(i) for i in idea_ids],
    )


_RELEASE_COLUMNS = """
    r.*, it.name as iteration_name, p.name as product_name
"""
_RELEASE_FROM = """
    from releases r join iterations it on it.id = r.iteration_id
    join products p on p.id = r.product_id
"""


async def release(conn: asyncpg.Connection, release_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select {_RELEASE_COLUMNS} {_RELEASE_FROM} where r.id = $1", uuid.UUID(release_id)
    )
    return row


async def release_of_iteration(
    conn: asyncpg.Connection, iteration_id: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"select {_RELEASE_COLUMNS} {_RELEASE_FROM} where r.iteration_id = $1",
        uuid.UUID(iteration_id),
    )
    return row


async def released_ideas(conn: asyncpg.Connection, release_id: str) -> list[asyncpg.Record]:
    """Highest score first, then by number."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "select * from release_ideas where release_id = $1 order by weighted_score desc, number",
        uuid.UUID(release_id),
    )
    return rows


async def list_releases(
    conn: asyncpg.Connection, product_id: str, after: Mapping[str, Any] | None, limit: int
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""
        select {_RELEASE_COLUMNS} {_RELEASE_FROM}
        where ($1::uuid is null or r.product_id = $1)
          and ($2::bigint is null or r.number < $2)
        order by r.number desc limit $3
        """,
        uuid.UUID(product_id) if product_id else None,
        int(after["n"]) if after else None,
        limit,
    )
    return rows


async def commenters(
    conn: asyncpg.Connection, idea_ids: Sequence[str], limit: int
) -> list[asyncpg.Record]:
    """Who discussed these ideas most (visible, non-official comments)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """
        select author_id, count(*) as comments from comments
        where idea_id = any($1::uuid[]) and not hidden and not official
        group by author_id order by count(*) desc, author_id limit $2
        """,
        [uuid.UUID(i) for i in idea_ids],
        limit,
    )
    return rows
