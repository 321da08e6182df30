"""One week of the platform, every service running for real and talking only
through JetStream: 50 members across tiers submit and vote, a PM plans five
ideas and marks three done, the release tooling cuts the release. Three ship
and two roll over; the notes credit the right people with the right scores;
every author and supporter is paid exactly once; every supporter is told;
and cutting again changes nothing."""

from __future__ import annotations

import grpc
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import release_service_pb2 as rel_pb
from cocreate.rewards.v1 import rewards_service_pb2 as rewards_pb
from cocreate.rewards.v1 import rewards_service_pb2_grpc as rewards_grpc
from cocreate.votes.v1 import notification_service_pb2 as notes_pb

from tests.releases.helpers import (
    ADMIN,
    cast,
    cut,
    iteration_ideas,
    mark_done,
    new_iteration,
    new_product,
    plan,
    start_ideas,
    start_votes,
    submit,
)
from tests.support import Platform, eventually, metadata, stub

WEIGHTS = {"newcomer": 1, "member": 2, "core": 3}
MEMBERS = [f"member-{n:02d}" for n in range(50)]
# 10 core, 15 member, 25 newcomers (the default tier: nothing to grant).
TIERS = {m: "core" if n < 10 else "member" if n < 25 else "newcomer" for n, m in enumerate(MEMBERS)}
TITLES = [
    "Dark mode for every system app",
    "Faster fingerprint unlock",
    "Battery saver schedule",
    "Per-app volume control",
    "Quick settings reordering",
    "Lock screen weather widget",
    "Offline maps in the launcher",
]


def supporters_of(idea_index: int) -> list[str]:
    """A fixed, uneven pattern: idea k is supported by every member whose
    number leaves a remainder below 7 - k when divided by 9."""
    return [m for n, m in enumerate(MEMBERS) if n % 9 < 7 - idea_index and n % 7 != idea_index]


async def entries_of(
    rewards: rewards_grpc.RewardsServiceStub, member: str
) -> list[rewards_pb.Entry]:
    found: list[rewards_pb.Entry] = []
    token = ""
    while True:
        page = await rewards.ListEntries(
            rewards_pb.ListEntriesRequest(member_id=member, page_size=200, page_token=token),
            metadata=ADMIN,
        )
        found += page.entries
        token = page.next_page_token
        if not token:
            return found


def ship_rewards(entries: list[rewards_pb.Entry], idea_id: str) -> list[tuple[str, int]]:
    return sorted(
        (e.rule_id, e.amount)
        for e in entries
        if e.rule_id in ("idea_shipped_author", "idea_shipped_supporter") and idea_id in e.reason
    )


async def test_one_week_from_votes_to_release_notes_rewards_and_notifications(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    votes = await start_votes(platform)
    rewards = stub(await platform.start("rewards"), rewards_grpc.RewardsServiceStub)

    for member, tier in TIERS.items():
        if tier != "newcomer":
            await rewards.GrantTier(
                rewards_pb.GrantTierRequest(member_id=member, tier=tier, reason="community lead"),
                metadata=ADMIN,
            )
    product = await new_product(ideas)
    # Authors from every tier; some of them support ideas too.
    authors = [MEMBERS[n] for n in (3, 12, 20, 27, 33, 41, 48)]
    idea_ids = [
        await submit(ideas, product, author, title)
        for author, title in zip(authors, TITLES, strict=True)
    ]
    supporters = {idea_ids[k]: supporters_of(k) for k in range(len(TITLES))}
    for idea_id, members in supporters.items():
        for member in members:
            await cast(votes.votes, idea_id, member)

    # The PM plans the five best-supported ideas and marks three of them done.
    iteration = await new_iteration(ideas, product, "2026-W48")
    planned = idea_ids[:5]
    for idea_id in planned:
        await plan(ideas, iteration.id, idea_id)
    done = planned[:3]
    for idea_id in done:
        await mark_done(ideas, iteration.id, idea_id)
    expected = {
        i: (sum(WEIGHTS[TIERS[m]] for m in supporters[i]), len(supporters[i])) for i in planned
    }

    async def scores_settled() -> bool:
        listed = await iteration_ideas(ideas, iteration.id)
        return {i.idea_id: (i.weighted_score, i.voter_count) for i in listed} == expected

    # Tiers reached the votes service and the tallies reached the ideas read model.
    await eventually(scores_settled, within=40)

    release = await cut(ideas, iteration.id, "OS 3.0.26.11.27", request_id="week-48")
    assert {i.idea_id for i in release.shipped_ideas} == set(done)
    assert set(release.rolled_over_idea_ids) == set(planned[3:])
    following = await iteration_ideas(ideas, release.next_iteration_id)
    assert {i.idea_id for i in following} == set(planned[3:])
    for idea_id in done:
        shipped = await ideas.ideas.GetIdea(
            ideas_pb.GetIdeaRequest(idea_id=idea_id), metadata=ADMIN
        )
        assert shipped.idea.status == status.IDEA_STATUS_SHIPPED

    # The notes list the three with their scores, supporters and authors.
    notes = await ideas.releases.GetReleaseNotes(
        rel_pb.GetReleaseNotesRequest(release_id=release.id), metadata=metadata("reader")
    )
    lines = [line for line in notes.content.splitlines() if line.startswith("- **")]
    number = {i.idea_id: i.number for i in release.shipped_ideas}
    wanted = sorted(done, key=lambda i: (-expected[i][0], number[i]))
    by_title = dict(zip(idea_ids, TITLES, strict=True))
    by_author = dict(zip(idea_ids, authors, strict=True))
    assert lines == [
        f"- **{by_title[i]}** (#{number[i]}): score {expected[i][0]}, "
        f"{expected[i][1]} supporters, idea by {by_author[i]}"
        for i in wanted
    ]
    assert [c.member_id for c in notes.notes.thanks_to] == [by_author[i] for i in wanted]

    # Rewards: each author and each supporter at the moment of shipping, once per idea.
    async def paid() -> bool:
        for idea_id in done:
            for member in {by_author[idea_id], *supporters[idea_id]}:
                entries = await entries_of(rewards, member)
                want = []
                if member == by_author[idea_id]:
                    want.append(("idea_shipped_author", 500))
                if member in supporters[idea_id]:
                    want.append(("idea_shipped_supporter", 20))
                if ship_rewards(entries, idea_id) != sorted(want):
                    return False
        return True

    await eventually(paid, within=30)

    # Every supporter is told their idea shipped.
    async def told() -> bool:
        for idea_id in done:
            for member in supporters[idea_id]:
                answer = await votes.notifications.ListNotifications(
                    notes_pb.ListNotificationsRequest(page_size=500), metadata=metadata(member)
                )
                if not any(
                    n.idea_id == idea_id
                    and n.new_status == status.IDEA_STATUS_SHIPPED
                    and n.release_id == release.id
                    for n in answer.notifications
                ):
                    return False
        return True

    await eventually(told, within=30)

    # And every member granted a tier was told of it, once.
    async def tiers_told() -> bool:
        for member in (m for m, tier in TIERS.items() if tier != "newcomer"):
            answer = await votes.notifications.ListNotifications(
                notes_pb.ListNotificationsRequest(page_size=500), metadata=metadata(member)
            )
            if [n.tier for n in answer.notifications if n.tier] != [TIERS[member]]:
                return False
        return True

    await eventually(tiers_told)

    # The weekly job runs again: nothing changes, the same release comes back.
    pool = ideas.service.runtime.pool
    events_before = await pool.fetchval("select count(*) from outbox")
    history_before = await pool.fetchval("select count(*) from idea_history")
    again = await cut(ideas, iteration.id, "OS 3.0.26.11.27", request_id="week-48-retry")
    assert again == release
    assert await pool.fetchval("select count(*) from outbox") == events_before
    assert await pool.fetchval("select count(*) from idea_history") == history_before
    assert await paid()
    with_retry = await ideas.releases.CutRelease(
        rel_pb.CutReleaseRequest(iteration_id=iteration.id, version="OS 3.0.26.11.27"),
        metadata=metadata("pm-1", "pm"),
    )
    assert with_retry.release == release
    try:
        await cut(ideas, iteration.id, "OS 3.0.26.11.28")
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    else:
        raise AssertionError("a second version of a released iteration was accepted")
