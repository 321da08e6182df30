"""The shop's changes, in the caller's transaction: a redemption takes one
item from stock, the item's price from the member's balance (a ledger entry
and its PointsAwarded) and is recorded, all committed together or not at all.
SQL lives in shop_store.py."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg

from services.kit.errors import FailedPrecondition
from services.kit.outbox import Outbox
from services.rewards import domain, ledger, shop_store


async def redeem(
    conn: asyncpg.Connection,
    outbox: Outbox,
    tiers: domain.TierThresholds,
    *,
    member_id: str,
    item_id: uuid.UUID,
    request_id: str,
) -> asyncpg.Record:
    """Redeem one of the item for the member; returns the redemption (with
    its item's name)."""
    # The item first, then the account: every redemption locks in this order.
    item = await shop_store.get_item(conn, item_id, lock=True)
    if not item["available"]:
        raise FailedPrecondition("this item is not available", reason="ITEM_UNAVAILABLE")
    if item["stock"] <= 0:
        raise FailedPrecondition("this item is out of stock", reason="OUT_OF_STOCK")
    redemption_id = uuid.uuid4()
    entry = await ledger.append_entry(
        conn,
        outbox,
        tiers,
        ledger.NewEntry(
            member_id=member_id,
            amount=-item["price"],
            kind=domain.KIND_REDEMPTION,
            reason=f"redeemed {item['name']}",
            source=f"request:{request_id or redemption_id}",
            actor_id=member_id,
            award_key=f"redemption:{redemption_id}",
            occurred_at=datetime.now(UTC),
        ),
    )
    assert entry is not None
    await shop_store.take_one_from_stock(conn, item_id)
    return await shop_store.record_redemption(
        conn, redemption_id, member_id, item_id, item["price"], entry["id"]
    )
