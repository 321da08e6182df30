"""SQL for the tier → weight policy: read it, replace it, and re-weight the
active votes on open ideas to it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from services.votes import domain
from services.votes.store.record import Record


@dataclass(frozen=True)
class StoredPolicy:
    policy: domain.WeightPolicy
    version: int
    updated_at: datetime
    updated_by: str


def policy_of(weights: Mapping[str, int]) -> domain.WeightPolicy:
    """The policy from its stored weights column."""
    return domain.WeightPolicy(dict(weights))


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
        weights,
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
            dict(policy.weights),
            policy.weight_of(policy.lowest_tier),
        )
    )
