"""Tier changes from rewards re-weight votes on open ideas; duplicate merges
from ideas move votes to the target."""

from __future__ import annotations

import grpc
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.votes.v1 import votes_service_pb2 as pb

from tests.support import Platform, error_reason, eventually, metadata
from tests.votes import feed


async def test_a_tier_change_reweights_votes_on_open_ideas_only(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "open", "shipped")
    await feed.cast(client, "m1", "open")
    await feed.cast(client, "m1", "shipped")
    await feed.close(svc, "shipped")

    await feed.change_tier(svc, "m1", "core", 1)

    tally = await feed.tally_settles(client, "open", score=3, voters=1)
    assert dict(tally.voters_by_tier) == {"core": 1}
    await feed.folded(svc)
    shipped = await feed.tally(client, "shipped")
    assert (shipped.weighted_score, dict(shipped.voters_by_tier)) == (1, {"newcomer": 1})
    assert (await feed.cast(client, "m1", "open")).weight == 3


async def test_an_older_tier_change_is_ignored(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.cast(client, "m1", "idea-1")

    await feed.change_tier(svc, "m1", "honorary", 2)
    await feed.tally_settles(client, "idea-1", score=5, voters=1)
    await feed.change_tier(svc, "m1", "member", 1)

    async def handled() -> bool:
        count = await svc.runtime.pool.fetchval(
            "select count(*) from inbox where consumer = 'votes-rewards'"
        )
        return bool(count == 2)

    await eventually(handled)
    await feed.folded(svc)
    assert (await feed.tally(client, "idea-1")).weighted_score == 5
    assert await svc.runtime.pool.fetchval("select tier from members") == "honorary"


async def test_a_merge_moves_the_votes_and_a_member_on_both_keeps_one_at_the_higher_weight(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "source", "target")
    await feed.cast(client, "only-source", "source")
    await feed.cast(client, "both", "source")
    await feed.cast(client, "both", "target")
    await feed.cast(client, "only-target", "target")
    # Freeze the target so "both" gets a higher weight on the source only.
    await feed.change_status(svc, "target", idea_status_pb2.IDEA_STATUS_DECLINED, 2)
    await feed.wait_for_status(svc, "target", idea_status_pb2.IDEA_STATUS_DECLINED)
    await feed.change_tier(svc, "both", "core", 1)
    await feed.tally_settles(client, "source", score=4, voters=2)

    await feed.merge(svc, "source", "target")

    target = await feed.tally_settles(client, "target", score=1 + 3 + 1, voters=3)
    assert dict(target.voters_by_tier) == {"newcomer": 2, "core": 1}
    source = await feed.tally_settles(client, "source", score=0, voters=0)
    assert not source.open
    error = await feed.expect_error(
        client.CastVote(pb.CastVoteRequest(idea_id="source"), metadata=metadata("m9")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_reason(error) == "IDEA_CLOSED"

    retracts = await feed.outbox_events(
        svc, "cocreate.votes.vote.retracted", events_pb.VoteRetracted
    )
    assert sorted((r.idea_id, r.member_id, r.reason) for r in retracts) == [
        ("source", "both", events_pb.VOTE_CHANGE_REASON_MERGE),
        ("source", "only-source", events_pb.VOTE_CHANGE_REASON_MERGE),
    ]
    casts = await feed.outbox_events(svc, "cocreate.votes.vote.cast", events_pb.VoteCast)
    merged_casts = [c for c in casts if c.reason == events_pb.VOTE_CHANGE_REASON_MERGE]
    assert [(c.idea_id, c.member_id, c.weight) for c in merged_casts] == [
        ("target", "only-source", 1)
    ]
    tallies = await feed.tally_events(svc)
    last = {t.idea_id: t for t in tallies}
    assert (last["source"].weighted_score, last["target"].weighted_score) == (0, 5)


async def test_a_repeated_merge_event_changes_nothing_more(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "source", "target")
    await feed.cast(client, "m1", "source")
    await feed.merge(svc, "source", "target")
    await feed.tally_settles(client, "target", score=1, voters=1)

    await feed.merge(svc, "source", "target")

    async def handled() -> bool:
        count = await svc.runtime.pool.fetchval(
            "select count(*) from inbox where consumer = 'votes-ideas'"
        )
        return bool(count == 4)

    await eventually(handled)
    await feed.folded(svc)
    assert (await feed.tally(client, "target")).weighted_score == 1
    assert (await feed.tally(client, "source")).weighted_score == 0


async def test_a_tier_the_policy_does_not_name_counts_like_the_lowest(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.change_tier(svc, "m1", "legend", 1)
    await feed.wait_for_tier(svc, "m1", 1)

    vote = await feed.cast(client, "m1", "idea-1")

    assert (vote.tier, vote.weight) == ("legend", 1)


async def test_a_merge_into_an_idea_merged_meanwhile_moves_the_votes_to_the_final_target(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "first", "middle", "final")
    await feed.cast(client, "m1", "first")
    await feed.cast(client, "m2", "middle")

    # Out of order, as after a redelivery: middle → final is handled before first → middle.
    await feed.merge(svc, "middle", "final")
    await feed.tally_settles(client, "final", score=1, voters=1)
    await feed.merge(svc, "first", "middle")

    await feed.tally_settles(client, "final", score=2, voters=2)
    for idea_id in ("first", "middle"):
        tally = await feed.tally_settles(client, idea_id, score=0, voters=0)
        assert not tally.open
