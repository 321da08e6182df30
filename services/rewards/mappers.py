"""Rows of the rewards service's tables as API messages: the one place that maps
them. Each function is named after the message it builds."""

from __future__ import annotations

import asyncpg
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.rewards import domain

_KINDS = {
    domain.KIND_EARN: pb.ENTRY_KIND_EARN,
    domain.KIND_REVERSAL: pb.ENTRY_KIND_REVERSAL,
    domain.KIND_GRANT: pb.ENTRY_KIND_GRANT,
    domain.KIND_DEDUCTION: pb.ENTRY_KIND_DEDUCTION,
    domain.KIND_REDEMPTION: pb.ENTRY_KIND_REDEMPTION,
}


def account(row: asyncpg.Record, tiers: domain.TierThresholds) -> pb.Account:
    upcoming, missing = tiers.upcoming(row["lifetime_points"])
    account = pb.Account(
        member_id=row["member_id"],
        balance=row["balance"],
        lifetime_points=row["lifetime_points"],
        tier=row["tier"],
        earned_tier=row["earned_tier"],
        granted_tier=row["granted_tier"] or "",
        next_tier=upcoming,
        points_to_next_tier=missing,
        tier_version=row["tier_version"],
        entry_count=row["entry_count"],
    )
    account.create_time.FromDatetime(row["created_at"])
    return account


def entry(row: asyncpg.Record) -> pb.Entry:
    entry = pb.Entry(
        entry_id=str(row["id"]),
        member_id=row["member_id"],
        sequence=row["seq"],
        amount=row["amount"],
        balance_after=row["balance_after"],
        kind=_KINDS[row["kind"]],
        reason=row["reason"],
        source=row["source"],
        rule_id=row["rule_id"],
        rule_version=row["rule_version"],
        actor_id=row["actor_id"],
        hash=bytes(row["hash"]).hex(),
    )
    entry.create_time.FromDatetime(row["created_at"])
    return entry


def rule(row: asyncpg.Record) -> pb.Rule:
    rule = pb.Rule(
        rule_id=row["rule_id"],
        version=row["version"],
        points=row["points"],
        daily_cap=row["daily_cap"],
        enabled=row["enabled"],
        description=row["description"],
        updated_by=row["updated_by"],
    )
    rule.update_time.FromDatetime(row["updated_at"])
    return rule


def tier_change(row: asyncpg.Record) -> pb.TierChange:
    change = pb.TierChange(
        member_id=row["member_id"],
        version=row["version"],
        old_tier=row["old_tier"],
        new_tier=row["new_tier"],
        reason=row["reason"],
        actor_id=row["actor_id"],
    )
    change.change_time.FromDatetime(row["changed_at"])
    return change


def catalogue_item(row: asyncpg.Record) -> pb.CatalogueItem:
    item = pb.CatalogueItem(
        item_id=str(row["id"]),
        name=row["name"],
        description=row["description"],
        price=row["price"],
        stock=row["stock"],
        available=row["available"],
    )
    item.create_time.FromDatetime(row["created_at"])
    item.update_time.FromDatetime(row["updated_at"])
    return item


def redemption(row: asyncpg.Record) -> pb.Redemption:
    redemption = pb.Redemption(
        redemption_id=str(row["id"]),
        member_id=row["member_id"],
        item_id=str(row["item_id"]),
        price=row["price"],
        entry_id=str(row["entry_id"]),
        item_name=row["item_name"],
    )
    redemption.create_time.FromDatetime(row["created_at"])
    return redemption


def leaderboard_entry(row: asyncpg.Record, rank: int) -> pb.LeaderboardEntry:
    return pb.LeaderboardEntry(
        rank=rank,
        member_id=row["member_id"],
        points_earned=row["points_earned"],
        ideas_shipped=row["ideas_shipped"],
        tier=row["tier"],
    )
