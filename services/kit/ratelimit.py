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
        retry_after = max(0.001, float(row["retry_after"]))
        raise ResourceExhausted(
            f"rate limit for {action}: {limit} per {window_seconds:g}s; "
            f"retry in {retry_after:.1f}s",
            retry_after_seconds=retry_after,
        )
