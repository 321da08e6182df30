"""Changes of the points ledger, in the caller's transaction. Every change of a
balance goes through `append_entry` (or `append_earnings`, its batched form),
which locks the account row, chains the entry's hash onto the account's last
one, updates the balance in the same transaction, re-derives the tier and
emits PointsAwarded (and TierChanged). SQL lives in store.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
from cocreate.events.v1 import rewards_events_pb2

from services.kit.errors import FailedPrecondition
from services.kit.outbox import Outbox, PendingEvent
from services.rewards import domain, store

AWARDS_PER_EVENT = 500  # about 100 bytes each


@dataclass(frozen=True)
class NewEntry:
    member_id: str
    amount: int
    kind: str
    reason: str
    source: str
    actor_id: str
    award_key: str
    occurred_at: datetime
    rule_id: str = ""
    rule_version: int = 0


def _next_entry(account: Any, new: NewEntry, created_at: datetime) -> domain.EntryFields:
    """The fields of `new` as the next entry of `account` (its sequence number
    and the balance after it), the input of the entry's hash."""
    return domain.EntryFields(
        entry_id=str(uuid.uuid4()),
        member_id=new.member_id,
        seq=account["entry_count"] + 1,
        amount=new.amount,
        balance_after=account["balance"] + new.amount,
        kind=new.kind,
        reason=new.reason,
        source=new.source,
        rule_id=new.rule_id,
        rule_version=new.rule_version,
        actor_id=new.actor_id,
        award_key=new.award_key,
        occurred_at=new.occurred_at,
        created_at=created_at,
    )


def _lifetime_after(account: Any, new: NewEntry) -> int:
    """The account's lifetime points once `new` is appended."""
    lifetime: int = account["lifetime_points"]
    return lifetime + (new.amount if domain.counts_as_lifetime(new.kind) else 0)


def _points_awarded(fields: domain.EntryFields, lifetime: int) -> rewards_events_pb2.PointsAwarded:
    event = rewards_events_pb2.PointsAwarded(
        entry_id=fields.entry_id,
        member_id=fields.member_id,
        amount=fields.amount,
        kind=fields.kind,
        reason=fields.reason,
        balance=fields.balance_after,
        lifetime_points=lifetime,
        rule_id=fields.rule_id,
    )
    event.award_time.FromDatetime(fields.created_at)
    return event


async def append_entry(
    conn: asyncpg.Connection, outbox: Outbox, tiers: domain.TierThresholds, new: NewEntry
) -> asyncpg.Record | None:
    """Append one entry; None when (member, rule, award key) already has one."""
    account = await store.lock_account(conn, new.member_id)
    if await store.find_entry(conn, new.member_id, new.rule_id, new.award_key) is not None:
        return None
    balance_after = account["balance"] + new.amount
    if balance_after < 0:
        raise FailedPrecondition(
            f"the balance is {account['balance']} points; {-new.amount} are needed",
            reason="INSUFFICIENT_POINTS",
            metadata={"balance": str(account["balance"]), "needed": str(-new.amount)},
        )
    fields = _next_entry(account, new, datetime.now(UTC))
    digest = domain.entry_hash(account["last_hash"], fields)
    row = await store.insert_entry(conn, fields, digest)
    if row is None:
        return None
    lifetime = _lifetime_after(account, new)
    updated = await store.update_balance(
        conn,
        new.member_id,
        balance=balance_after,
        lifetime_points=lifetime,
        entry_count=fields.seq,
        last_hash=digest,
    )
    await outbox.emit(
        conn,
        _points_awarded(fields, lifetime),
        aggregate_id=new.member_id,
        aggregate_version=fields.seq,
    )
    await refresh_tier(
        conn, outbox, tiers, updated, reason=f"lifetime points {lifetime}", actor_id=new.actor_id
    )
    return row


_KEEP = object()


async def refresh_tier(
    conn: asyncpg.Connection,
    outbox: Outbox,
    tiers: domain.TierThresholds,
    account: asyncpg.Record,
    *,
    reason: str,
    actor_id: str,
    granted_tier: Any = _KEEP,
) -> asyncpg.Record:
    """Re-derive the tier of a locked account; record and emit a change."""
    granted = account["granted_tier"] if granted_tier is _KEEP else granted_tier
    earned = tiers.earned(account["lifetime_points"])
    tier = domain.effective_tier(earned, granted)
    if (earned, granted, tier) == (
        account["earned_tier"],
        account["granted_tier"],
        account["tier"],
    ):
        return account
    changed = tier != account["tier"]
    version = account["tier_version"] + (1 if changed else 0)
    updated = await store.set_tier(
        conn,
        account["member_id"],
        earned_tier=earned,
        granted_tier=granted,
        tier=tier,
        tier_version=version,
    )
    if changed:
        changed_at = datetime.now(UTC)
        await store.add_tier_change(
            conn,
            account["member_id"],
            version=version,
            old_tier=account["tier"],
            new_tier=tier,
            reason=reason,
            actor_id=actor_id,
            changed_at=changed_at,
        )
        event = rewards_events_pb2.TierChanged(
            member_id=account["member_id"],
            old_tier=account["tier"],
            new_tier=tier,
            version=version,
            reason=reason,
        )
        event.change_time.FromDatetime(changed_at)
        await outbox.emit(conn, event, aggregate_id=account["member_id"], aggregate_version=version)
    return updated


async def append_earnings(
    conn: asyncpg.Connection,
    outbox: Outbox,
    tiers: domain.TierThresholds,
    accounts: dict[str, asyncpg.Record],
    news: Sequence[NewEntry],
) -> None:
    """`append_entry` for many earnings (positive amounts, keys not yet
    awarded) on accounts the caller locked: the entries chained per account in
    order, inserted in one statement, the accounts updated in one, their
    PointsAwarded together (PointsAwardedTogether); a tier that changes is
    recorded as `append_entry` does."""
    if not news:
        return
    created_at = datetime.now(UTC)
    current = dict(accounts)
    rows: list[tuple[domain.EntryFields, bytes]] = []
    awarded: list[rewards_events_pb2.PointsAwarded] = []
    for new in news:
        assert new.amount > 0, "append_earnings adds earnings only"
        account = current[new.member_id]
        fields = _next_entry(account, new, created_at)
        digest = domain.entry_hash(account["last_hash"], fields)
        lifetime = _lifetime_after(account, new)
        current[new.member_id] = {
            **account,
            "entry_count": fields.seq,
            "balance": fields.balance_after,
            "lifetime_points": lifetime,
            "last_hash": digest,
        }
        rows.append((fields, digest))
        awarded.append(_points_awarded(fields, lifetime))
    await store.insert_entries(conn, rows)
    updated = await store.update_balances(
        conn, [current[member_id] for member_id in sorted({new.member_id for new in news})]
    )
    # In events of at most AWARDS_PER_EVENT: a ship's ten thousand supporters
    # in one would pass NATS's 1 MB message limit.
    await outbox.emit_many(
        conn,
        [
            PendingEvent(
                rewards_events_pb2.PointsAwardedTogether(
                    awards=awarded[start : start + AWARDS_PER_EVENT]
                ),
                aggregate_id="rewards",
            )
            for start in range(0, len(awarded), AWARDS_PER_EVENT)
        ],
    )
    for account in updated:
        await refresh_tier(
            conn,
            outbox,
            tiers,
            account,
            reason=f"lifetime points {account['lifetime_points']}",
            actor_id=domain.SYSTEM_ACTOR,
        )
