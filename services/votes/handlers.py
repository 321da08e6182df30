"""What the votes service does with the ideas and rewards events.

- IdeaSubmitted: the idea is known and open for votes.
- IdeaStatusChanged: shipped, declined and merged ideas close; any other
  status (re)opens. An older aggregate version than the stored one is ignored.
  The idea's supporters are told in the same transaction.
- IdeasMerged: the source closes as merged and its active votes move to the
  target; a member who supported both keeps one vote, at the higher weight.
- IdeaHidden, IdeaUnhidden: a hidden idea takes no votes and shows no tally
  to members (as if it did not exist); the newer of the two wins.
- TierChanged: the member's tier is stored (an older version is ignored) and
  their active votes on open ideas take the new tier's weight.

Every handler runs in the inbox transaction, so the effect and the record
that the event was handled commit together.
"""

from __future__ import annotations

import asyncpg
from cocreate.events.v1 import ideas_events_pb2, rewards_events_pb2
from cocreate.ideas.v1 import idea_status_pb2

from services.kit.events import Event
from services.kit.inbox import InboxConsumer
from services.kit.outbox import Outbox
from services.votes import changes, domain, store
from services.votes.notifications import handlers as notification_handlers


def consumers(outbox: Outbox) -> list[InboxConsumer]:
    ideas = IdeaHandlers(outbox)
    rewards = TierHandlers()
    return [
        InboxConsumer(
            "votes-ideas",
            {
                ideas_events_pb2.IdeaSubmitted: ideas.submitted,
                ideas_events_pb2.IdeaStatusChanged: ideas.status_changed,
                ideas_events_pb2.IdeasMerged: ideas.merged,
                ideas_events_pb2.IdeaHidden: ideas.hidden,
                ideas_events_pb2.IdeaUnhidden: ideas.unhidden,
            },
            apply_together=False,  # each takes the advisory locks of store/'s order
        ),
        InboxConsumer(
            "votes-rewards",
            {rewards_events_pb2.TierChanged: rewards.tier_changed},
            apply_together=False,
        ),
    ]


class IdeaHandlers:
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    async def submitted(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaSubmitted]
    ) -> None:
        idea_id = event.message.idea_id
        await store.lock_ideas(conn, [idea_id], exclusive=True)
        await store.upsert_idea(
            conn, idea_id, idea_status_pb2.IDEA_STATUS_OPEN, event.aggregate_version
        )

    async def status_changed(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaStatusChanged]
    ) -> None:
        idea_id = event.message.idea_id
        await store.lock_ideas(conn, [idea_id], exclusive=True)
        await store.upsert_idea(conn, idea_id, event.message.new_status, event.aggregate_version)
        # Told here, under the idea's lock and in the transaction that closes
        # it, so the supporters told are exactly the votes the change found: a
        # separate consumer could tell them before the idea closed here, and
        # miss a vote cast in between.
        await notification_handlers.status_changed(conn, event)

    async def hidden(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaHidden]
    ) -> None:
        """A hidden idea is, for members, no idea: no votes, no tally."""
        await store.lock_ideas(conn, [event.message.idea_id], exclusive=True)
        await store.set_hidden(conn, event.message.idea_id, True, event.aggregate_version)

    async def unhidden(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeaUnhidden]
    ) -> None:
        await store.lock_ideas(conn, [event.message.idea_id], exclusive=True)
        await store.set_hidden(conn, event.message.idea_id, False, event.aggregate_version)

    async def merged(
        self, conn: asyncpg.Connection, event: Event[ideas_events_pb2.IdeasMerged]
    ) -> None:
        source_id, target_id = event.message.source_idea_id, event.message.target_idea_id
        # The ideas service sends the final target, but a retried event may
        # arrive after the target itself was merged: follow the chain.
        target_id = await store.final_target(conn, target_id)
        if source_id == target_id:
            return
        await store.lock_policy(conn)
        await store.lock_ideas(conn, [source_id, target_id], exclusive=True)
        source = await store.get_idea(conn, source_id)
        if source is not None and source["merged_into"] is not None:
            return  # merged before: its votes have moved already
        await store.mark_merged(conn, source_id, target_id, idea_status_pb2.IDEA_STATUS_MERGED)
        await store.ensure_idea(conn, target_id, idea_status_pb2.IDEA_STATUS_OPEN)
        # Casts on either idea wait now, so the source's voters are fixed. Hold
        # their member rows (before any vote row) so a tier change of one of
        # them waits for the move and then re-weights the moved vote too.
        await store.hold_members(conn, await store.voters_of(conn, source_id))
        votes = await store.active_votes_of_ideas(conn, [source_id, target_id])
        on_target = {v["member_id"]: v for v in votes if v["idea_id"] == target_id}
        moved: list[str] = []
        for vote in (v for v in votes if v["idea_id"] == source_id):
            kept = on_target.get(vote["member_id"])
            if kept is None:
                moved.append(vote["member_id"])
                await changes.cast(
                    conn,
                    self._outbox,
                    idea_id=target_id,
                    member_id=vote["member_id"],
                    weight=vote["weight"],
                    tier=vote["tier"],
                    cause=domain.CAUSE_MERGE,
                    cast_at=vote["cast_at"],
                )
            elif vote["weight"] > kept["weight"]:
                await changes.reweight(
                    conn, kept, weight=vote["weight"], tier=vote["tier"], cause=domain.CAUSE_MERGE
                )
            await changes.retract(conn, self._outbox, vote, cause=domain.CAUSE_MERGE)
        await store.mark_dirty(conn, [source_id, target_id])
        # JetStream redelivers a merge that failed after later events, such as
        # the target's ship: its moved supporters are told what the others were.
        await notification_handlers.tell_late_supporters(conn, target_id, moved)


class TierHandlers:
    async def tier_changed(
        self, conn: asyncpg.Connection, event: Event[rewards_events_pb2.TierChanged]
    ) -> None:
        message = event.message
        version = message.version or event.aggregate_version
        await store.lock_policy(conn)
        await store.lock_member(conn, message.member_id, exclusive=True)
        if not await store.upsert_member_tier(conn, message.member_id, message.new_tier, version):
            return  # an older change than the one stored
        await reweight_member(conn, message.member_id, message.new_tier)


async def reweight_member(conn: asyncpg.Connection, member_id: str, tier: str) -> int:
    """Give the member's active votes on open ideas the weight of `tier`."""
    policy = (await store.get_policy(conn)).policy
    weight = policy.weight_of(tier)
    changed = 0
    for vote in await store.active_votes_of_member(conn, member_id, open_ideas_only=True):
        changed += await changes.reweight(
            conn, vote, weight=weight, tier=tier, cause=domain.CAUSE_TIER_CHANGE
        )
    return changed
