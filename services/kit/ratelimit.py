"""Per-member rate limits: fixed windows counted in Postgres, so every replica
sees the same count. Over the limit → RESOURCE_EXHAUSTED with the retry delay."""

from __future__ import annotations

import asyncpg

from services.kit.errors import ResourceExhausted


async def hit(
    conn: asyncpg.Connection | asyncpg.Pool,
    member_id: str,
    action: str,
    *,
    limit: int,
    window_seconds: float,
) -> None:
    """Count one `action` by `member_id`; raise when the window's limit is passed.
    A limit of 0 or less switches the limit off."""
    if limit <= 0:
        return
    row = await conn.fetchrow(
        counting_sql("values ($1::text, 1)", action="$2::text", window="$3::float8"),
        member_id,
        action,
        float(window_seconds),
    )
    assert row is not None
    if row["hits"] > limit:
        raise exhausted(action, limit, window_seconds, max(0.001, float(row["retry_after"])))


def counting_sql(attempts: str, *, action: str, window: str) -> str:
    """A statement that counts many members' attempts at once, for a WITH in a
    statement of the caller's (so the count costs no round trip of its own):
    `attempts` is a query of (member_id, n) rows, `action` and `window` the
    SQL of the action's name and of the window's seconds (parameters, as
    `$5`). It returns each member's `hits` after counting and the
    `retry_after` seconds until the window ends; with `room` they say how
    many of the attempts fit.

    The window rows stay locked until the caller commits, so replicas
    counting the same member take turns and the limit holds exactly; the
    rows are counted in member order, one lock order for every writer. The
    attempts that were counted but not made must be given back (`uncount`)."""
    return f"""
        insert into rate_limit_windows as w (member_id, action, window_start, hits)
        select a.member_id, {action}, clock_timestamp(), a.n
        from ({attempts}) as a(member_id, n)
        order by a.member_id
        on conflict (member_id, action) do update set
            window_start = case
                when w.window_start <= clock_timestamp() - make_interval(secs => {window})
                then clock_timestamp() else w.window_start end,
            hits = case
                when w.window_start <= clock_timestamp() - make_interval(secs => {window})
                then excluded.hits else w.hits + excluded.hits end
        returning w.member_id, w.hits,
            extract(epoch from w.window_start + make_interval(secs => {window})
                               - clock_timestamp())::float8 as retry_after
    """


def room(hits: int, attempts: int, limit: int) -> int:
    """How many of `attempts` fit in the window (the first ones), when counting
    them took its hits to `hits`."""
    return max(0, min(attempts, limit - (hits - attempts)))


async def uncount(conn: asyncpg.Connection, unmade: dict[str, int], action: str) -> None:
    """Give back attempts `counting_sql` counted that were not made (over the
    limit, or refused for another reason), in the caller's transaction."""
    unmade = {member: n for member, n in unmade.items() if n > 0}
    if not unmade:
        return
    members = sorted(unmade)
    await conn.execute(
        "update rate_limit_windows w set hits = w.hits - t.n "
        "from unnest($1::text[], $2::int[]) as t(m, n) "
        "where w.member_id = t.m and w.action = $3",
        members,
        [unmade[m] for m in members],
        action,
    )


def exhausted(
    action: str, limit: int, window_seconds: float, retry_after: float
) -> ResourceExhausted:
    """The error for an attempt over the limit."""
    return ResourceExhausted(
        f"rate limit for {action}: {limit} per {window_seconds:g}s; retry in {retry_after:.1f}s",
        retry_after_seconds=retry_after,
    )
