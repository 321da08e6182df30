"""The vote changes every path shares — a member's cast or retract, a merge, a
void, a re-weight. Each writes the vote, its history entry, its event and the
mark that the idea's tally must be folded again, all in the caller's
transaction, so they commit together or not at all.
"""

from __future__ import annotations

from datetime import datetime

import asyncpg
from cocreate.events.v1 import votes_events_pb2 as events_pb

from services.kit.outbox import Outbox
from services.votes import domain, store

_REASONS = {
    domain.CAUSE_MEMBER: events_pb.VOTE_CHANGE_REASON_MEMBER,
    domain.CAUSE_MERGE: events_pb.VOTE_CHANGE_REASON_MERGE,
    domain.CAUSE_VOID: events_pb.VOTE_CHANGE_REASON_VOID,
}


def vote_aggregate(idea_id: str, member_id: str) -> str:
    return f"{idea_id}/{member_id}"


def cast_event(vote: store.Record, cause: int) -> events_pb.VoteCast:
    """The event of a vote that became active (`vote` as stored after the cast)."""
    event = events_pb.VoteCast(
        idea_id=vote["idea_id"],
        member_id=vote["member_id"],
        weight=vote["weight"],
        tier=vote["tier"],
        reason=_REASONS[cause],
        vote_version=vote["version"],
    )
    event.cast_time.FromDatetime(vote["cast_at"])
    return event


def retract_event(retracted: store.Record, cause: int) -> events_pb.VoteRetracted:
    """The event of a vote that became inactive (as stored after the retract; a
    retract keeps the weight and tier the vote counted with)."""
    event = events_pb.VoteRetracted(
        idea_id=retracted["idea_id"],
        member_id=retracted["member_id"],
        reason=_REASONS[cause],
        weight=retracted["weight"],
        tier=retracted["tier"],
        vote_version=retracted["version"],
    )
    event.retract_time.FromDatetime(retracted["retracted_at"])
    return event


async def cast(
    conn: asyncpg.Connection,
    outbox: Outbox,
    *,
    idea_id: str,
    member_id: str,
    weight: int,
    tier: str,
    cause: int,
    actor_id: str = "",
    cast_at: datetime | None = None,
) -> tuple[store.Record, bool]:
    """Make the vote active; returns the vote and whether it changed (a vote
    that was already active is left as it is)."""
    vote = await store.activate_vote(conn, idea_id, member_id, weight, tier, cast_at)
    if vote is None:
        existing = await store.get_vote(conn, idea_id, member_id)
        return existing, False
    await store.add_history(
        conn,
        [
            store.HistoryEntry(
                idea_id, member_id, domain.ACTION_CAST, cause, weight, 0, tier, actor_id
            )
        ],
    )
    await outbox.emit(
        conn,
        cast_event(vote, cause),
        aggregate_id=vote_aggregate(idea_id, member_id),
        aggregate_version=vote["version"],
    )
    await store.mark_dirty(conn, [idea_id])
    return vote, True


async def retract(
    conn: asyncpg.Connection,
    outbox: Outbox,
    vote: store.Record,
    *,
    cause: int,
    actor_id: str = "",
    note: str = "",
) -> store.Record:
    """Make an active (locked) vote inactive."""
    idea_id, member_id = vote["idea_id"], vote["member_id"]
    retracted = await store.deactivate_vote(conn, idea_id, member_id)
    await store.add_history(
        conn,
        [
            store.HistoryEntry(
                idea_id,
                member_id,
                domain.ACTION_RETRACT,
                cause,
                0,
                vote["weight"],
                vote["tier"],
                actor_id,
                note,
            )
        ],
    )
    await outbox.emit(
        conn,
        retract_event(retracted, cause),
        aggregate_id=vote_aggregate(idea_id, member_id),
        aggregate_version=retracted["version"],
    )
    await store.mark_dirty(conn, [idea_id])
    return retracted


async def reweight(
    conn: asyncpg.Connection,
    vote: store.Record,
    *,
    weight: int,
    tier: str,
    cause: int,
    actor_id: str = "",
) -> bool:
    """Give an active (locked) vote a new weight and tier; whether anything changed."""
    if vote["weight"] == weight and vote["tier"] == tier:
        return False
    await store.set_vote_weight(conn, vote["idea_id"], vote["member_id"], weight, tier)
    await store.add_history(
        conn,
        [
            store.HistoryEntry(
                vote["idea_id"],
                vote["member_id"],
                domain.ACTION_REWEIGHT,
                cause,
                weight,
                vote["weight"],
                tier,
                actor_id,
            )
        ],
    )
    await store.mark_dirty(conn, [vote["idea_id"]])
    return True
