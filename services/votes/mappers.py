"""Rows of the votes service's tables as API messages: the one place that maps them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cocreate.votes.v1 import votes_service_pb2 as pb

from services.votes import store


def vote(row: Mapping[str, Any]) -> pb.Vote:
    message = pb.Vote(
        idea_id=row["idea_id"],
        member_id=row["member_id"],
        weight=row["weight"],
        tier=row["tier"],
        active=row["active"],
    )
    message.cast_time.FromDatetime(row["cast_at"])
    if row["retracted_at"] is not None:
        message.retract_time.FromDatetime(row["retracted_at"])
    return message


def tally(row: store.Record) -> pb.Tally:
    message = pb.Tally(
        idea_id=row["idea_id"],
        version=row["version"] or 0,
        weighted_score=row["weighted_score"] or 0,
        voter_count=row["voter_count"] or 0,
        trending_score=row["trending_score"] or 0.0,
        open=row["open"],
    )
    message.voters_by_tier.update(store.tier_counts(row["voters_by_tier"]))
    message.update_time.FromDatetime(row["updated_at"] or row["idea_updated_at"])
    return message


def history_entry(row: store.Record) -> pb.VoteHistoryEntry:
    entry = pb.VoteHistoryEntry(
        id=row["id"],
        idea_id=row["idea_id"],
        member_id=row["member_id"],
        action=row["action"],
        cause=row["cause"],
        weight=row["weight"],
        previous_weight=row["previous_weight"],
        tier=row["tier"],
        actor_id=row["actor_id"],
        note=row["note"],
    )
    entry.event_time.FromDatetime(row["occurred_at"])
    return entry


def policy(stored: store.StoredPolicy) -> pb.WeightPolicy:
    message = pb.WeightPolicy(
        lowest_tier=stored.policy.lowest_tier,
        version=stored.version,
        updated_by=stored.updated_by,
    )
    message.weights.update(stored.policy.weights)
    message.update_time.FromDatetime(stored.updated_at)
    return message
