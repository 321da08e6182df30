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
        """
        insert into rate_limit_windows as w (member_id, action, window_start, hits)
        values ($1, $2, clock_timestamp(), 1)
        on conflict (member_id, action) do update set
            window_start = case
                when w.window_start <= clock_timestamp() - make_interval(secs => $3)
                then clock_timestamp() else w.window_start end,
            hits = case
                when w.window_start <= clock_timestamp() - make_interval(secs => $3)
                then 1 else w.hits + 1 end
        returning hits,
            extract(epoch from w.window_start + make_interval(secs => $3)
                               - clock_timestamp())::float8 as retry_after
        """,
        member_id,
        action,
        float(window_seconds),
    )
    assert row is not None
    if row["hits"] > limit:
        raise exhausted(action, limit, window_seconds, max(0.001, float(row["retry_after"])))


async def hit_many(
    conn: asyncpg.Connection,
    attempts: dict[str, int],
    action: str,
    *,
    limit: int,
    window_seconds: float,
) -> dict[str, tuple[int, float]]:
    """Count `attempts[member]` actions for each member in one statement, inside
    the caller's transaction; for each member: how many of its attempts fit in
    the window (the first ones), and the seconds until the window ends.

    The window rows stay locked until the caller commits, so replicas counting
    the same member take turns and the limit holds exactly. Attempts that do
    not fit are not counted (as `hit` does by rolling back)."""
    if limit <= 0 or not attempts:
        return {member: (count, 0.0) for member, count in attempts.items()}
    members = sorted(attempts)  # one lock order for every writer
    rows = await conn.fetch(
        """
        insert into rate_limit_windows as w (member_id, action, window_start, hits)
        select m, $3, clock_timestamp(), n from unnest($1::text[], $2::int[]) as t(m, n)
        on conflict (member_id, action) do update set
            window_start = case
                when w.window_start <= clock_timestamp() - make_interval(secs => $4)
                then clock_timestamp() else w.window_start end,
            hits = case
                when w.window_start <= clock_timestamp() - make_interval(secs => $4)
                then excluded.hits else w.hits + excluded.hits end
        returning member_id, hits,
            extract(epoch from w.window_start + make_interval(secs => $4)
                               - clock_timestamp())::float8 as retry_after
        """,
        members,
        [attempts[m] for m in members],
        action,
        float(window_seconds),
    )
    granted: dict[str, tuple[int, float]] = {}
    refused: dict[str, int] = {}
    for row in rows:
        wanted = attempts[row["member_id"]]
        before = row["hits"] - wanted
        fits = max(0, min(wanted, limit - before))
        granted[row["member_id"]] = (fits, max(0.001, float(row["retry_after"])))
        if fits < wanted:
            refused[row["member_id"]] = wanted - fits
    if refused:
        await conn.execute(
            "update rate_limit_windows w set hits = w.hits - t.n "
            "from unnest($1::text[], $2::int[]) as t(m, n) "
            "where w.member_id = t.m and w.action = $3",
            list(refused),
            list(refused.values()),
            action,
        )
    return granted


def exhausted(
    action: str, limit: int, window_seconds: float, retry_after: float
) -> ResourceExhausted:
    """The error for an attempt over the limit."""
    return ResourceExhausted(
        f"rate limit for {action}: {limit} per {window_seconds:g}s; retry in {retry_after:.1f}s",
        retry_after_seconds=retry_after,
    )
