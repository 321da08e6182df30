"""SQL for the rewards tables, each function on the caller's connection. A
balance changes only through ledger.py, which chains each entry's hash onto
the account's last one and re-derives the tier."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from services.rewards import domain

# ---- accounts -------------------------------------------------------------


async def ensure_account(conn: asyncpg.Connection, member_id: str) -> None:
    seed = os.urandom(32)
    await conn.execute(
        "insert into accounts (member_id, seed, last_hash) values ($1, $2, $3) "
        "on conflict (member_id) do nothing",
        member_id,
        seed,
        domain.chain_seed(member_id, seed),
    )


async def get_account(conn: asyncpg.Connection, member_id: str) -> asyncpg.Record:
    await ensure_account(conn, member_id)
    row = await conn.fetchrow("select * from accounts where member_id = $1", member_id)
    assert row is not None
    return row


async def lock_account(conn: asyncpg.Connection, member_id: str) -> asyncpg.Record:
    await ensure_account(conn, member_id)
    row = await conn.fetchrow("select * from accounts where member_id = $1 for update", member_id)
    assert row is not None
    return row


async def all_member_ids(conn: asyncpg.Connection) -> list[str]:
    return [r["member_id"] for r in await conn.fetch("select member_id from accounts order by 1")]


async def find_account(conn: asyncpg.Connection, member_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from accounts where member_id = $1", member_id)


# ---- the ledger -----------------------------------------------------------


async def find_entry(
    conn: asyncpg.Connection, member_id: str, rule_id: str, award_key: str
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "select * from ledger_entries where member_id = $1 and rule_id = $2 and award_key = $3",
        member_id,
        rule_id,
        award_key,
    )


async def count_rewards_on_day(
    conn: asyncpg.Connection, member_id: str, rule_id: str, moment: datetime
) -> int:
    day = domain.day_of(moment)
    count = await conn.fetchval(
        "select count(*) from ledger_entries where member_id = $1 and rule_id = $2 "
        "and kind = 'earn' and occurred_at >= $3 and occurred_at < $3 + interval '1 day'",
        member_id,
        rule_id,
        day,
    )
    return int(count)


async def insert_entry(
    conn: asyncpg.Connection, fields: domain.EntryFields, digest: bytes
) -> asyncpg.Record | None:
    """Insert one entry; None when (member, rule, award key) already has one."""
    return await conn.fetchrow(
        """
        insert into ledger_entries
            (id, member_id, seq, amount, balance_after, kind, reason, source, rule_id,
             rule_version, actor_id, award_key, occurred_at, created_at, hash)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
        on conflict (member_id, rule_id, award_key) do nothing
        returning *
        """,
        uuid.UUID(fields.entry_id),
        fields.member_id,
        fields.seq,
        fields.amount,
        fields.balance_after,
        fields.kind,
        fields.reason,
        fields.source,
        fields.rule_id,
        fields.rule_version,
        fields.actor_id,
        fields.award_key,
        fields.occurred_at,
        fields.created_at,
        digest,
    )


async def update_balance(
    conn: asyncpg.Connection,
    member_id: str,
    *,
    balance: int,
    lifetime_points: int,
    entry_count: int,
    last_hash: bytes,
) -> asyncpg.Record:
    updated = await conn.fetchrow(
        "update accounts set balance = $2, lifetime_points = $3, entry_count = $4, "
        "last_hash = $5 where member_id = $1 returning *",
        member_id,
        balance,
        lifetime_points,
        entry_count,
        last_hash,
    )
    assert updated is not None
    return updated


async def set_tier(
    conn: asyncpg.Connection,
    member_id: str,
    *,
    earned_tier: str,
    granted_tier: str | None,
    tier: str,
    tier_version: int,
) -> asyncpg.Record:
    updated = await conn.fetchrow(
        "update accounts set earned_tier = $2, granted_tier = $3, tier = $4, tier_version = $5 "
        "where member_id = $1 returning *",
        member_id,
        earned_tier,
        granted_tier,
        tier,
        tier_version,
    )
    assert updated is not None
    return updated


async def add_tier_change(
    conn: asyncpg.Connection,
    member_id: str,
    *,
    version: int,
    old_tier: str,
    new_tier: str,
    reason: str,
    actor_id: str,
    changed_at: datetime,
) -> None:
    await conn.execute(
        "insert into tier_changes "
        "(member_id, version, old_tier, new_tier, reason, actor_id, changed_at) "
        "values ($1, $2, $3, $4, $5, $6, $7)",
        member_id,
        version,
        old_tier,
        new_tier,
        reason,
        actor_id,
        changed_at,
    )


async def list_entries(
    conn: asyncpg.Connection, member_id: str, before_seq: int | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "select * from ledger_entries where member_id = $1 "
            "and ($2::bigint is null or seq < $2) order by seq desc limit $3",
            member_id,
            before_seq,
            limit,
        )
    )


async def entries_in_order(conn: asyncpg.Connection, member_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "select * from ledger_entries where member_id = $1 order by seq", member_id
        )
    )


async def list_tier_changes(
    conn: asyncpg.Connection, member_id: str, before_version: int | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "select * from tier_changes where member_id = $1 "
            "and ($2::bigint is null or version < $2) order by version desc limit $3",
            member_id,
            before_version,
            limit,
        )
    )


# ---- rules ----------------------------------------------------------------


async def get_rule(conn: asyncpg.Connection, rule_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from reward_rules where rule_id = $1", rule_id)


async def lock_rule(conn: asyncpg.Connection, rule_id: str) -> asyncpg.Record | None:
    return await conn.fetchrow("select * from reward_rules where rule_id = $1 for update", rule_id)


async def list_rules(conn: asyncpg.Connection, after: str, limit: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            "select * from reward_rules where rule_id > $1 order by rule_id limit $2", after, limit
        )
    )


async def update_rule(
    conn: asyncpg.Connection,
    rule_id: str,
    *,
    points: int | None,
    daily_cap: int | None,
    enabled: bool | None,
    updated_by: str,
) -> asyncpg.Record:
    row = await conn.fetchrow(
        """
        update reward_rules set
            version = version + 1,
            points = coalesce($2, points),
            daily_cap = coalesce($3, daily_cap),
            enabled = coalesce($4, enabled),
            updated_at = now(),
            updated_by = $5
        where rule_id = $1
        returning *
        """,
        rule_id,
        points,
        daily_cap,
        enabled,
        updated_by,
    )
    assert row is not None
    return row


async def add_rule_version(conn: asyncpg.Connection, row: asyncpg.Record) -> None:
    """Keep a rule as it is now (`row`) in its history of versions."""
    await conn.execute(
        "insert into reward_rule_versions "
        "(rule_id, version, points, daily_cap, enabled, updated_at, updated_by) "
        "values ($1, $2, $3, $4, $5, $6, $7)",
        row["rule_id"],
        row["version"],
        row["points"],
        row["daily_cap"],
        row["enabled"],
        row["updated_at"],
        row["updated_by"],
    )


# ---- the leaderboard ------------------------------------------------------


async def leaderboard(
    conn: asyncpg.Connection, since: datetime | None, offset: int, limit: int
) -> list[asyncpg.Record]:
    """Members by points earned (spending does not count), then by ideas shipped,
    counting what happened since `since` (None: all time)."""
    return list(
        await conn.fetch(
            """
            with points as (
                select member_id, sum(amount)::bigint as points_earned
                from ledger_entries
                where kind <> 'redemption' and ($1::timestamptz is null or occurred_at >= $1)
                group by member_id
            ), shipped as (
                select author_id as member_id, count(*) as ideas_shipped
                from ideas
                where shipped_at is not null and author_id <> '' and not hidden_as_spam
                  and ($1::timestamptz is null or shipped_at >= $1)
                group by author_id
            )
            select member_id,
                   coalesce(points_earned, 0) as points_earned,
                   coalesce(ideas_shipped, 0) as ideas_shipped,
                   coalesce(a.tier, $4) as tier
            from points full join shipped using (member_id)
                 left join accounts a using (member_id)
            where coalesce(points_earned, 0) > 0 or coalesce(ideas_shipped, 0) > 0
            order by points_earned desc nulls last, ideas_shipped desc nulls last, member_id
            offset $2 limit $3
            """,
            since,
            offset,
            limit,
            domain.NEWCOMER_TIER,
        )
    )


# ---- many at once: the votes consumer's runs of VoteCast -----------------


async def ensure_accounts(conn: asyncpg.Connection, member_ids: Sequence[str]) -> None:
    """`ensure_account` for many members in one statement."""
    ids = sorted(set(member_ids))
    seeds = [os.urandom(32) for _ in ids]
    await conn.execute(
        "insert into accounts (member_id, seed, last_hash) "
        "select * from unnest($1::text[], $2::bytea[], $3::bytea[]) "
        "on conflict (member_id) do nothing",
        ids,
        seeds,
        [domain.chain_seed(member_id, seed) for member_id, seed in zip(ids, seeds, strict=True)],
    )


async def lock_accounts(
    conn: asyncpg.Connection, member_ids: Sequence[str]
) -> dict[str, asyncpg.Record]:
    """Lock existing accounts in member order (one order for every writer)."""
    rows = await conn.fetch(
        "select * from accounts where member_id = any($1::text[]) order by member_id for update",
        sorted(set(member_ids)),
    )
    return {row["member_id"]: row for row in rows}


async def awarded_keys(
    conn: asyncpg.Connection, rule_id: str, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Which (member, award key) already have an entry under `rule_id`."""
    rows = await conn.fetch(
        "select e.member_id, e.award_key from ledger_entries e "
        "join unnest($2::text[], $3::text[]) as k(member_id, award_key) "
        "on e.member_id = k.member_id and e.award_key = k.award_key where e.rule_id = $1",
        rule_id,
        [k[0] for k in keys],
        [k[1] for k in keys],
    )
    return {(row["member_id"], row["award_key"]) for row in rows}


async def rewards_on_days(
    conn: asyncpg.Connection, rule_id: str, member_days: Sequence[tuple[str, datetime]]
) -> dict[tuple[str, datetime], int]:
    """`count_rewards_on_day` for many (member, day start in UTC)."""
    rows = await conn.fetch(
        """
        select k.member_id, k.day, count(e.id) as n
        from unnest($2::text[], $3::timestamptz[]) as k(member_id, day)
        left join ledger_entries e
               on e.member_id = k.member_id and e.rule_id = $1 and e.kind = 'earn'
              and e.occurred_at >= k.day and e.occurred_at < k.day + interval '1 day'
        group by k.member_id, k.day
        """,
        rule_id,
        [k[0] for k in member_days],
        [k[1] for k in member_days],
    )
    return {(row["member_id"], row["day"]): int(row["n"]) for row in rows}


async def insert_entries(
    conn: asyncpg.Connection, rows: Sequence[tuple[domain.EntryFields, bytes]]
) -> None:
    """`insert_entry` for many (entry fields, hash) in one statement."""
    await conn.execute(
        """
        insert into ledger_entries
            (id, member_id, seq, amount, balance_after, kind, reason, source, rule_id,
             rule_version, actor_id, award_key, occurred_at, created_at, hash)
        select * from unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                             $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[],
                             $11::text[], $12::text[], $13::timestamptz[],
                             $14::timestamptz[], $15::bytea[])
        """,
        [uuid.UUID(f.entry_id) for f, _ in rows],
        [f.member_id for f, _ in rows],
        [f.seq for f, _ in rows],
        [f.amount for f, _ in rows],
        [f.balance_after for f, _ in rows],
        [f.kind for f, _ in rows],
        [f.reason for f, _ in rows],
        [f.source for f, _ in rows],
        [f.rule_id for f, _ in rows],
        [f.rule_version for f, _ in rows],
        [f.actor_id for f, _ in rows],
        [f.award_key for f, _ in rows],
        [f.occurred_at for f, _ in rows],
        [f.created_at for f, _ in rows],
        [digest for _, digest in rows],
    )


async def update_balances(
    conn: asyncpg.Connection, accounts: Sequence[Mapping[str, Any]]
) -> list[asyncpg.Record]:
    """`update_balance` for many accounts (each with its member_id, balance,
    lifetime_points, entry_count and last_hash) in one statement."""
    # `member_id = any(...)` beside the join: the accounts are found by their
    # key whatever the statistics of the cached plan say (joined alone, the
    # plan hashed the whole table on every batch).
    return list(
        await conn.fetch(
            """
            update accounts a set balance = t.balance, lifetime_points = t.lifetime,
                entry_count = t.entry_count, last_hash = t.last_hash
            from unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[])
                 as t(member_id, balance, lifetime, entry_count, last_hash)
            where a.member_id = t.member_id and a.member_id = any($1::text[])
            returning a.*
            """,
            [a["member_id"] for a in accounts],
            [a["balance"] for a in accounts],
            [a["lifetime_points"] for a in accounts],
            [a["entry_count"] for a in accounts],
            [a["last_hash"] for a in accounts],
        )
    )
