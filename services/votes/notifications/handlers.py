"""Who is told what, from the ideas and rewards events.

- IdeaStatusChanged to PLANNED, IN_PROGRESS, SHIPPED or DECLINED: every
  member with an active vote on the idea (UNDER_REVIEW and a re-opening are
  not worth a message). A status change older than one already told is not
  told. Run by the votes-ideas consumer, which closes the idea in the same
  transaction. Supporters whose votes a merge moves onto the idea after that
  (its event handled late) are told the same, once.
- IdeasMerged: every member who supported the duplicate (their votes moved
  to the target, or are still being moved).
- PointsAwarded: the member, for every ledger entry (positive or negative).
- TierChanged: the member.

Each fact is stored once per member (a unique "about" key), so a redelivered
or replayed event tells nobody twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
from cocreate.events.v1 import ideas_events_pb2, rewards_events_pb2
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.votes.v1 import notification_service_pb2 as pb

from services.kit.events import Event
from services.kit.inbox import InboxConsumer
from services.votes.notifications import store
from services.votes.notifications.store import NewNotification

CONSUMER_NAME = "votes-notifications"

TOLD_STATUSES: dict[int, str] = {
    idea_status_pb2.IDEA_STATUS_PLANNED: "is planned",
    idea_status_pb2.IDEA_STATUS_IN_PROGRESS: "is in progress",
    idea_status_pb2.IDEA_STATUS_SHIPPED: "has shipped",
    idea_status_pb2.IDEA_STATUS_DECLINED: "was declined",
}


async def status_changed(
    conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaStatusChanged]
) -> None:
    m = event.message
    what = TOLD_STATUSES.get(m.new_status)
    note = None
    if what is not None:
        text = (
            f"“{m.title}”, an idea you support, {what}"
            if m.title
            else f"An idea you support {what}"
        )
        if m.note:
            text += f": {m.note}"
        note = NewNotification(
            kind=pb.NOTIFICATION_KIND_IDEA_STATUS_CHANGED,
            text=text,
            about=f"status:{m.idea_id}:{event.aggregate_version}",
            idea_id=m.idea_id,
            new_status=m.new_status,
            release_id=m.release_id,
        )
    if not await store.newer_status(conn, m.idea_id, event.aggregate_version, note):
        return  # an older change arriving late
    if note is not None:
        await store.add(conn, await store.supporters(conn, m.idea_id), note)


async def tell_late_supporters(
    conn: asyncpg.Connection, idea_id: str, member_ids: Sequence[str]
) -> None:
    """Members whose support reached the idea after its newest status was
    told (votes a merge moved onto it, when the merge's event was handled
    after the status change) are told it too, once."""
    note = await store.told_status(conn, idea_id)
    if note is not None:
        await store.add(conn, member_ids, note)


def _merged_text(source_title: str, target_title: str) -> str:
    if source_title and target_title:
        return (
            f"“{source_title}”, an idea you support, was merged into “{target_title}”;"
            " your vote moved with it"
        )
    return "An idea you support was merged into another one; your vote moved with it"


async def merged(conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeasMerged]) -> None:
    m = event.message
    if m.source_idea_id == m.target_idea_id:
        return
    await store.add(
        conn,
        await store.merged_supporters(conn, m.source_idea_id),
        NewNotification(
            kind=pb.NOTIFICATION_KIND_IDEA_MERGED,
            text=_merged_text(m.source_title, m.target_title),
            about=f"merged:{m.source_idea_id}",
            idea_id=m.source_idea_id,
            new_status=idea_status_pb2.IDEA_STATUS_MERGED,
            target_idea_id=m.target_idea_id,
        ),
    )


VOTE_CAST_RULE = "vote_cast"


async def points_awarded_together(
    conn: asyncpg.Connection, event: Event[rewards_events_pb2.PointsAwardedTogether]
) -> None:
    for award in event.message.awards:
        await points_awarded(conn, event.carrying(award))


async def points_awarded(
    conn: asyncpg.Connection, event: Event[rewards_events_pb2.PointsAwarded]
) -> None:
    m = event.message
    # The point a member earns for their own vote is no news to them (they
    # just voted); a notification for each would bury the ones that are.
    if m.amount == 0 or m.rule_id == VOTE_CAST_RULE:
        return
    verb = "received" if m.amount > 0 else "lost"
    text = f"You {verb} {abs(m.amount)} points"
    if m.reason:
        text += f": {m.reason}"
    await store.add(
        conn,
        [m.member_id],
        NewNotification(
            kind=pb.NOTIFICATION_KIND_POINTS_AWARDED,
            text=text,
            about=f"points:{m.entry_id or event.event_id}",
            points=m.amount,
        ),
    )


async def tier_changed(
    conn: asyncpg.Connection, event: Event[rewards_events_pb2.TierChanged]
) -> None:
    m = event.message
    version = m.version or event.aggregate_version
    await store.add(
        conn,
        [m.member_id],
        NewNotification(
            kind=pb.NOTIFICATION_KIND_TIER_CHANGED,
            text=f"Your tier is now {m.new_tier}" + (f" (was {m.old_tier})" if m.old_tier else ""),
            about=f"tier:{version}" if version else f"tier-event:{event.event_id}",
            tier=m.new_tier,
        ),
    )


# Under load a PointsAwardedTogether comes from every rewards transaction for
# a vote write, a few tens of ms apart, and each transaction here costs about
# as much whatever it carries: a transaction per 100 ms of awards, as rewards'
# VOTE_WRITES_GATHER_SECONDS.
GATHER_SECONDS = 0.1


def consumer() -> InboxConsumer:
    return InboxConsumer(
        CONSUMER_NAME,
        {
            # IdeaStatusChanged is told by the votes-ideas consumer (see
            # services/votes/handlers.py), in the transaction that closes the idea.
            ideas_events_pb2.IdeasMerged: merged,
            rewards_events_pb2.PointsAwarded: points_awarded,
            rewards_events_pb2.PointsAwardedTogether: points_awarded_together,
            rewards_events_pb2.TierChanged: tier_changed,
        },
        gather_seconds=GATHER_SECONDS,
    )
