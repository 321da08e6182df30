"""Changes of the reward rules, in the caller's transaction: the rule's next
version and its entry in the rule's history of versions, together. SQL lives
in store.py."""

from __future__ import annotations

import asyncpg

from services.kit.errors import Aborted, NotFound
from services.rewards import store


async def update_rule(
    conn: asyncpg.Connection,
    rule_id: str,
    *,
    expected_version: int,
    points: int | None,
    daily_cap: int | None,
    enabled: bool | None,
    updated_by: str,
) -> asyncpg.Record:
    """Make the fields given (None: keep as is) the rule's next version, if it
    is still at `expected_version` (0: whatever version it is at)."""
    current = await store.lock_rule(conn, rule_id)
    if current is None:
        raise NotFound("rule", rule_id)
    if expected_version and expected_version != current["version"]:
        raise Aborted(
            f"rule {rule_id} is at version {current['version']}; read it again",
            reason="VERSION_MISMATCH",
            metadata={"version": str(current["version"])},
        )
    row = await store.update_rule(
        conn, rule_id, points=points, daily_cap=daily_cap, enabled=enabled, updated_by=updated_by
    )
    await store.add_rule_version(conn, row)
    return row
