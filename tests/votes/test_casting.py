"""Casting and retracting votes: weights, idempotency, closed and unknown
ideas, the rate limit, bad input, and the events each change emits."""

from __future__ import annotations

import grpc
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.votes.v1 import votes_service_pb2 as pb
from google.rpc import error_details_pb2

from tests.support import Platform, detail, error_reason, eventually, metadata, violated_fields
from tests.votes import feed


async def test_cast_counts_at_the_lowest_tier_for_an_unknown_member_and_the_tally_follows(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")

    vote = await feed.cast(client, "m1", "idea-1")

    assert (vote.idea_id, vote.member_id, vote.weight, vote.tier, vote.active) == (
        "idea-1",
        "m1",
        1,
        "newcomer",
        True,
    )
    tally = await feed.tally_settles(client, "idea-1", score=1, voters=1)
    assert dict(tally.voters_by_tier) == {"newcomer": 1}
    assert tally.trending_score > 0
    assert tally.version == 1
    assert tally.open


async def test_casting_again_changes_nothing_and_gives_the_same_answer(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")

    first = await feed.cast(client, "m1", "idea-1")
    second = await feed.cast(client, "m1", "idea-1")

    assert first == second
    await feed.folded(svc)
    tally = await feed.tally(client, "idea-1")
    assert (tally.weighted_score, tally.voter_count, tally.version) == (1, 1, 1)
    casts = await feed.outbox_events(svc, "cocreate.votes.vote.cast", events_pb.VoteCast)
    assert len(casts) == 1


async def test_a_retried_request_id_gets_the_first_answer(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")

    first = await feed.cast(client, "m1", "idea-1", request_id="r-1")
    await feed.retract(client, "m1", "idea-1")
    replayed = await feed.cast(client, "m1", "idea-1", request_id="r-1")

    assert replayed == first
    stored = await svc.runtime.pool.fetchval(
        "select active from votes where idea_id = 'idea-1' and member_id = 'm1'"
    )
    assert stored is False


async def test_retract_then_cast_works_any_number_of_times(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")

    for _ in range(3):
        assert (await feed.cast(client, "m1", "idea-1")).active
        retracted = await feed.retract(client, "m1", "idea-1")
        assert not retracted.active
        assert retracted.HasField("retract_time")
    again = await feed.retract(client, "m1", "idea-1")
    assert again == retracted
    await feed.cast(client, "m1", "idea-1")

    await feed.tally_settles(client, "idea-1", score=1, voters=1)
    retracts = await feed.outbox_events(
        svc, "cocreate.votes.vote.retracted", events_pb.VoteRetracted
    )
    assert [r.reason for r in retracts] == [events_pb.VOTE_CHANGE_REASON_MEMBER] * 3
    assert [r.vote_version for r in retracts] == [2, 4, 6]


async def test_a_vote_on_an_unknown_idea_is_not_found(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)

    error = await feed.expect_error(
        client.CastVote(pb.CastVoteRequest(idea_id="nope"), metadata=metadata("m1")),
        grpc.StatusCode.NOT_FOUND,
    )
    assert error_reason(error) == "NOT_FOUND"


async def test_closed_ideas_refuse_casts_and_retracts_and_open_statuses_accept(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "shipped", "planned")
    await feed.cast(client, "m1", "shipped")
    await feed.change_status(svc, "planned", idea_status_pb2.IDEA_STATUS_PLANNED, 2)
    await feed.wait_for_status(svc, "planned", idea_status_pb2.IDEA_STATUS_PLANNED)
    await feed.close(svc, "shipped")

    error = await feed.expect_error(
        client.CastVote(pb.CastVoteRequest(idea_id="shipped"), metadata=metadata("m2")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_reason(error) == "IDEA_CLOSED"
    error = await feed.expect_error(
        client.RetractVote(pb.RetractVoteRequest(idea_id="shipped"), metadata=metadata("m1")),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert error_reason(error) == "IDEA_CLOSED"
    assert (await feed.cast(client, "m2", "planned")).active
    tally = await feed.tally_settles(client, "shipped", score=1, voters=1)
    assert not tally.open


async def test_an_older_status_change_is_ignored_and_a_newer_one_reopens(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    await feed.submit_ideas(svc, "idea-1")
    await feed.change_status(svc, "idea-1", idea_status_pb2.IDEA_STATUS_DECLINED, 3)
    await feed.wait_for_status(svc, "idea-1", idea_status_pb2.IDEA_STATUS_DECLINED)

    await feed.change_status(svc, "idea-1", idea_status_pb2.IDEA_STATUS_PLANNED, 2)

    async def handled() -> bool:
        count = await svc.runtime.pool.fetchval(
            "select count(*) from inbox where consumer = 'votes-ideas'"
        )
        return bool(count == 3)

    await eventually(handled)
    stored = await svc.runtime.pool.fetchrow("select * from ideas where idea_id = 'idea-1'")
    assert (stored["status"], stored["open"], stored["version"]) == (
        idea_status_pb2.IDEA_STATUS_DECLINED,
        False,
        3,
    )
    await feed.change_status(svc, "idea-1", idea_status_pb2.IDEA_STATUS_UNDER_REVIEW, 4)
    await feed.wait_for_status(svc, "idea-1", idea_status_pb2.IDEA_STATUS_UNDER_REVIEW)
    assert (await feed.cast(feed.votes(svc), "m1", "idea-1")).active


async def test_retracting_a_vote_never_cast_is_not_found(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")

    await feed.expect_error(
        client.RetractVote(pb.RetractVoteRequest(idea_id="idea-1"), metadata=metadata("m1")),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_casts_over_the_rate_limit_are_resource_exhausted_with_a_retry_delay(
    platform: Platform,
) -> None:
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "3"})
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a", "b", "c", "d")

    for idea_id in ("a", "b", "c"):
        await feed.cast(client, "m1", idea_id)
    error = await feed.expect_error(
        client.CastVote(pb.CastVoteRequest(idea_id="d"), metadata=metadata("m1")),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )

    retry = detail(error, error_details_pb2.RetryInfo)
    assert 0 < retry.retry_delay.ToMilliseconds() <= 60_000
    assert await svc.runtime.pool.fetchval("select count(*) from votes where idea_id = 'd'") == 0
    assert (await feed.cast(client, "m2", "d")).active


async def test_bad_input_is_invalid_argument_with_field_violations_and_changes_nothing(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    member = metadata("m1")

    cases = [
        (client.CastVote(pb.CastVoteRequest(idea_id=""), metadata=member), {"idea_id"}),
        (client.CastVote(pb.CastVoteRequest(idea_id="x" * 129), metadata=member), {"idea_id"}),
        (client.CastVote(pb.CastVoteRequest(idea_id=" idea-1"), metadata=member), {"idea_id"}),
        (
            client.CastVote(
                pb.CastVoteRequest(idea_id="idea-1", request_id="r" * 200), metadata=member
            ),
            {"request_id"},
        ),
        (client.RetractVote(pb.RetractVoteRequest(idea_id=""), metadata=member), {"idea_id"}),
        (client.GetTally(pb.GetTallyRequest(idea_id="\n"), metadata=member), {"idea_id"}),
        (
            client.BatchGetTallies(
                pb.BatchGetTalliesRequest(idea_ids=["idea-1", ""]), metadata=member
            ),
            {"idea_ids[1]"},
        ),
        (
            client.BatchGetTallies(
                pb.BatchGetTalliesRequest(idea_ids=["i"] * 501), metadata=member
            ),
            {"idea_ids"},
        ),
        (client.ListMyVotes(pb.ListMyVotesRequest(page_size=-1), metadata=member), {"page_size"}),
        (
            client.ListMyVotes(pb.ListMyVotesRequest(page_token="garbage"), metadata=member),
            {"page_token"},
        ),
    ]
    for call, fields in cases:
        error = await feed.expect_error(call, grpc.StatusCode.INVALID_ARGUMENT)
        assert violated_fields(error) == fields

    assert await svc.runtime.pool.fetchval("select count(*) from votes") == 0
    assert await svc.runtime.pool.fetchval("select count(*) from vote_history") == 0


async def test_each_change_emits_its_vote_event_and_a_versioned_tally_event(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")

    await feed.cast(client, "m1", "idea-1")
    await feed.tally_settles(client, "idea-1", score=1, voters=1)
    await feed.cast(client, "m2", "idea-1")
    await feed.tally_settles(client, "idea-1", score=2, voters=2)
    await feed.retract(client, "m1", "idea-1")
    await feed.tally_settles(client, "idea-1", score=1, voters=1)

    casts = await feed.outbox_events(svc, "cocreate.votes.vote.cast", events_pb.VoteCast)
    assert [(c.member_id, c.weight, c.tier, c.reason) for c in casts] == [
        ("m1", 1, "newcomer", events_pb.VOTE_CHANGE_REASON_MEMBER),
        ("m2", 1, "newcomer", events_pb.VOTE_CHANGE_REASON_MEMBER),
    ]
    tallies = await feed.tally_events(svc)
    assert [(t.version, t.weighted_score, t.voter_count) for t in tallies] == [
        (1, 1, 1),
        (2, 2, 2),
        (3, 1, 1),
    ]
    assert dict(tallies[-1].voters_by_tier) == {"newcomer": 1}
    assert tallies[1].trending_score > tallies[2].trending_score > 0

    async def published() -> bool:
        return not await svc.runtime.pool.fetchval(
            "select exists (select from outbox where published_at is null)"
        )

    await eventually(published)


async def test_a_vote_answered_ok_is_there_after_a_restart(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    vote = await feed.cast(client, "m1", "idea-1")

    await svc.stop(grace=0)
    restarted = await platform.start("votes")

    answer = await feed.votes(restarted).ListMyVotes(
        pb.ListMyVotesRequest(), metadata=metadata("m1")
    )
    assert list(answer.votes) == [vote]
    await feed.tally_settles(feed.votes(restarted), "idea-1", score=1, voters=1)
