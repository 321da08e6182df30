"""Notifications, against the real votes service with its NotificationService:
fed the ideas and rewards events through an outbox, as those services send them."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from cocreate.events.v1 import ideas_events_pb2, rewards_events_pb2
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.votes.v1 import notification_service_pb2 as pb

from tests.releases.helpers import VotesClients, cast, start_votes
from tests.support import Platform, emit, eventually, metadata, violated_fields

IDEA = "6f1d3c55-0000-4000-8000-000000000001"
OTHER_IDEA = "6f1d3c55-0000-4000-8000-000000000002"


@pytest.fixture
async def votes(platform: Platform) -> VotesClients:
    return await start_votes(platform)


async def submitted(votes: VotesClients, idea_id: str) -> None:
    await emit(
        votes.service,
        ideas_events_pb2.IdeaSubmitted(idea_id=idea_id, author_id="author-1", title="t"),
        source="ideas",
        aggregate_id=idea_id,
        aggregate_version=1,
    )


async def status_changed(
    votes: VotesClients,
    idea_id: str,
    new_status: status.IdeaStatus.ValueType,
    version: int,
    title: str = "",
) -> None:
    await emit(
        votes.service,
        ideas_events_pb2.IdeaStatusChanged(
            idea_id=idea_id,
            new_status=new_status,
            release_id="rel-1",
            actor_id="pm-1",
            title=title,
        ),
        source="ideas",
        aggregate_id=idea_id,
        aggregate_version=version,
    )


async def inbox(
    votes: VotesClients, member: str, *, unread_only: bool = False
) -> list[pb.Notification]:
    answer = await votes.notifications.ListNotifications(
        pb.ListNotificationsRequest(page_size=100, unread_only=unread_only),
        metadata=metadata(member),
    )
    return list(answer.notifications)


async def inbox_of_size(votes: VotesClients, member: str, size: int) -> list[pb.Notification]:
    async def probe() -> list[pb.Notification] | None:
        found = await inbox(votes, member)
        return found if len(found) >= size else None

    return await eventually(probe)


async def test_supporters_are_told_when_their_idea_ships_and_nobody_else(
    votes: VotesClients,
) -> None:
    await submitted(votes, IDEA)
    for member in ("s1", "s2"):
        await cast(votes.votes, IDEA, member)
    await status_changed(votes, IDEA, status.IDEA_STATUS_PLANNED, 3)
    await status_changed(votes, IDEA, status.IDEA_STATUS_SHIPPED, 5, title="Offline maps")
    for member in ("s1", "s2"):
        told = await inbox_of_size(votes, member, 2)
        assert [(n.kind, n.new_status, n.idea_id) for n in told] == [
            (pb.NOTIFICATION_KIND_IDEA_STATUS_CHANGED, status.IDEA_STATUS_SHIPPED, IDEA),
            (pb.NOTIFICATION_KIND_IDEA_STATUS_CHANGED, status.IDEA_STATUS_PLANNED, IDEA),
        ]
        assert told[0].release_id == "rel-1"
        assert told[0].text == "“Offline maps”, an idea you support, has shipped"
        assert told[1].text == "An idea you support is planned"  # an event with no title
    # A status change older than the one told arrives late: nobody hears of it.
    await status_changed(votes, IDEA, status.IDEA_STATUS_IN_PROGRESS, 4)
    await submitted(votes, OTHER_IDEA)
    await cast(votes.votes, OTHER_IDEA, "s1")
    await status_changed(votes, OTHER_IDEA, status.IDEA_STATUS_DECLINED, 2)
    told = await inbox_of_size(votes, "s1", 3)
    assert [n.new_status for n in told] == [
        status.IDEA_STATUS_DECLINED,
        status.IDEA_STATUS_SHIPPED,
        status.IDEA_STATUS_PLANNED,
    ]
    assert await inbox(votes, "bystander") == []


async def test_supporters_of_a_merged_duplicate_are_told(votes: VotesClients) -> None:
    await submitted(votes, IDEA)
    await submitted(votes, OTHER_IDEA)
    await cast(votes.votes, IDEA, "dup-fan")
    await cast(votes.votes, OTHER_IDEA, "target-fan")
    await emit(
        votes.service,
        ideas_events_pb2.IdeasMerged(
            source_idea_id=IDEA,
            target_idea_id=OTHER_IDEA,
            source_title="Call recorder",
            target_title="Record phone calls",
        ),
        source="ideas",
        aggregate_id=IDEA,
        aggregate_version=2,
    )
    told = await inbox_of_size(votes, "dup-fan", 1)
    assert [(n.kind, n.idea_id, n.target_idea_id) for n in told] == [
        (pb.NOTIFICATION_KIND_IDEA_MERGED, IDEA, OTHER_IDEA)
    ]
    assert told[0].text == (
        "“Call recorder”, an idea you support, was merged into “Record phone calls”;"
        " your vote moved with it"
    )
    assert await inbox(votes, "target-fan") == []


async def test_supporters_a_late_merge_moves_onto_a_shipped_idea_are_told_it_shipped(
    votes: VotesClients,
) -> None:
    """The merge came first at the ideas service, but its event was handled
    after the target's ship (JetStream redelivers a failed event after later
    ones): the supporters it moves are told of the ship like the others, once."""
    await submitted(votes, IDEA)
    await submitted(votes, OTHER_IDEA)
    await cast(votes.votes, IDEA, "dup-fan")
    await cast(votes.votes, OTHER_IDEA, "target-fan")
    await status_changed(votes, OTHER_IDEA, status.IDEA_STATUS_SHIPPED, 3, title="Call recorder")
    shipped = await inbox_of_size(votes, "target-fan", 1)
    merged = ideas_events_pb2.IdeasMerged(source_idea_id=IDEA, target_idea_id=OTHER_IDEA)
    for _ in range(2):  # the same merge again (a replay) tells nobody twice
        await emit(votes.service, merged, source="ideas", aggregate_id=IDEA, aggregate_version=2)
    told = await inbox_of_size(votes, "dup-fan", 2)
    assert sorted((n.kind, n.idea_id) for n in told) == [
        (pb.NOTIFICATION_KIND_IDEA_STATUS_CHANGED, OTHER_IDEA),
        (pb.NOTIFICATION_KIND_IDEA_MERGED, IDEA),
    ]
    late = next(n for n in told if n.kind == pb.NOTIFICATION_KIND_IDEA_STATUS_CHANGED)
    assert (late.text, late.new_status, late.release_id) == (
        shipped[0].text,
        status.IDEA_STATUS_SHIPPED,
        "rel-1",
    )

    async def both_merges_handled() -> bool:
        count = await votes.service.runtime.pool.fetchval(
            "select count(*) from inbox where consumer = 'votes-ideas'"
        )
        return bool(count == 5)  # two submits, a ship and the merge twice

    await eventually(both_merges_handled)
    assert len(await inbox(votes, "dup-fan")) == 2
    assert len(await inbox(votes, "target-fan")) == 1


async def test_members_are_told_of_points_and_tiers_once(votes: VotesClients) -> None:
    points = rewards_events_pb2.PointsAwarded(
        entry_id="e-1", member_id="m1", amount=20, reason="supported idea x, which shipped"
    )
    await emit(votes.service, points, source="rewards", aggregate_id="m1", aggregate_version=1)
    await emit(
        votes.service, points, source="rewards", aggregate_id="m1", aggregate_version=1
    )  # a re-send
    # The point for the member's own vote is not news to them: no notification.
    own_vote = rewards_events_pb2.PointsAwarded(
        entry_id="e-0", member_id="m1", amount=1, reason="voted", rule_id="vote_cast"
    )
    await emit(votes.service, own_vote, source="rewards", aggregate_id="m1", aggregate_version=2)
    await emit(
        votes.service,
        rewards_events_pb2.TierChanged(
            member_id="m1", old_tier="newcomer", new_tier="core", version=1
        ),
        source="rewards",
        aggregate_id="m1",
        aggregate_version=1,
    )
    # One consumer handles these in order: the tier's notification arriving
    # means the vote's point was handled before it.
    told = await inbox_of_size(votes, "m1", 2)
    assert sorted((n.kind, n.points, n.tier) for n in told) == [
        (pb.NOTIFICATION_KIND_POINTS_AWARDED, 20, ""),
        (pb.NOTIFICATION_KIND_TIER_CHANGED, 0, "core"),
    ]
    tier = next(n for n in told if n.tier)
    assert tier.text == "Your tier is now core (was newcomer)"


async def test_the_list_shows_unread_first_pages_and_marks_read(votes: VotesClients) -> None:
    for n in range(1, 6):
        await emit(
            votes.service,
            rewards_events_pb2.PointsAwarded(entry_id=f"e-{n}", member_id="m1", amount=n),
            source="rewards",
            aggregate_id="m1",
            aggregate_version=n,
        )
    await emit(
        votes.service,
        rewards_events_pb2.PointsAwarded(entry_id="x", member_id="m2", amount=9),
        source="rewards",
        aggregate_id="m2",
        aggregate_version=1,
    )
    told = await inbox_of_size(votes, "m1", 5)
    assert [n.points for n in told] == [5, 4, 3, 2, 1]
    others = await inbox_of_size(votes, "m2", 1)
    marked = await votes.notifications.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(ids=[told[0].id, told[1].id, others[0].id]),
        metadata=metadata("m1"),
    )
    assert (marked.marked_count, marked.unread_count) == (2, 3)
    pages: list[list[int]] = []
    token = ""
    while True:
        page = await votes.notifications.ListNotifications(
            pb.ListNotificationsRequest(page_size=2, page_token=token), metadata=metadata("m1")
        )
        pages.append([n.points for n in page.notifications])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[3, 2], [1, 5], [4]]
    assert [n.points for n in await inbox(votes, "m1", unread_only=True)] == [3, 2, 1]
    assert not (await inbox(votes, "m2"))[0].read
    everything = await votes.notifications.MarkNotificationsRead(
        pb.MarkNotificationsReadRequest(all=True), metadata=metadata("m1")
    )
    assert (everything.marked_count, everything.unread_count) == (3, 0)
    with pytest.raises(grpc.aio.AioRpcError) as neither:
        await votes.notifications.MarkNotificationsRead(
            pb.MarkNotificationsReadRequest(), metadata=metadata("m1")
        )
    assert violated_fields(neither.value) == {"ids"}


async def test_watch_delivers_new_notifications_live(platform: Platform) -> None:
    # A catch-up far longer than the wait below: only the NOTIFY can deliver in time.
    votes = await start_votes(
        platform, env={"COCREATE_VOTES_NOTIFICATIONS_CATCH_UP_SECONDS": "120"}
    )
    for n in (1, 2):
        await emit(
            votes.service,
            rewards_events_pb2.PointsAwarded(entry_id=f"old-{n}", member_id="m1", amount=n),
            source="rewards",
            aggregate_id="m1",
            aggregate_version=n,
        )
    stored = await inbox_of_size(votes, "m1", 2)
    # Resuming after the newest stored one, as a web page reconnecting does.
    watch = votes.notifications.WatchNotifications(
        pb.WatchNotificationsRequest(after_id=stored[0].id), metadata=metadata("m1")
    )
    replay = votes.notifications.WatchNotifications(
        pb.WatchNotificationsRequest(after_id=stored[1].id), metadata=metadata("m1")
    )
    try:
        replayed = await asyncio.wait_for(replay.read(), 10)
        assert isinstance(replayed, pb.WatchNotificationsResponse)
        assert replayed.notification.id == stored[0].id
        for n in (3, 4):
            await emit(
                votes.service,
                rewards_events_pb2.PointsAwarded(entry_id=f"new-{n}", member_id="m1", amount=n),
                source="rewards",
                aggregate_id="m1",
                aggregate_version=n,
            )
        received = []
        for _ in range(2):
            answer = await asyncio.wait_for(watch.read(), 20)
            assert isinstance(answer, pb.WatchNotificationsResponse)
            received.append(answer.notification.points)
        assert received == [3, 4]
    finally:
        watch.cancel()
        replay.cancel()


async def test_an_open_watch_ends_cleanly_when_the_service_shuts_down(platform: Platform) -> None:
    votes = await start_votes(platform)
    watch = votes.notifications.WatchNotifications(
        pb.WatchNotificationsRequest(), metadata=metadata("m1")
    )
    # The stream is open once its headers arrived.
    await asyncio.wait_for(watch.initial_metadata(), 10)
    stopping = asyncio.create_task(votes.service.stop(grace=30))
    # The stream ends with OK long before the 30 s grace would have run out.
    assert await asyncio.wait_for(watch.read(), 10) == grpc.aio.EOF
    assert await watch.code() == grpc.StatusCode.OK
    await asyncio.wait_for(stopping, 20)
