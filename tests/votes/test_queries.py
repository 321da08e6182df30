"""Reading votes: my votes, supporters, history, batch tallies — paginated,
with permissions checked before anything is looked up."""

from __future__ import annotations

import grpc
from cocreate.votes.v1 import votes_service_pb2 as pb

from tests.support import Platform, error_reason, metadata, violated_fields
from tests.votes import feed

PM = metadata("pm-1", "pm")


async def test_my_votes_are_listed_newest_first_page_by_page(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    ideas = [f"idea-{n}" for n in range(5)]
    await feed.submit_ideas(svc, *ideas)
    for idea_id in ideas:
        await feed.cast(client, "m1", idea_id)
    await feed.retract(client, "m1", "idea-2")
    await feed.cast(client, "m2", "idea-0")

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        answer = await client.ListMyVotes(
            pb.ListMyVotesRequest(page_size=2, page_token=token), metadata=metadata("m1")
        )
        seen += [v.idea_id for v in answer.votes]
        pages += 1
        token = answer.next_page_token
        if not token:
            break

    assert seen == ["idea-4", "idea-3", "idea-1", "idea-0"]
    assert pages == 2


async def test_my_votes_on_given_ideas_answer_whether_i_support_each(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    ideas = [f"idea-{n}" for n in range(4)]
    await feed.submit_ideas(svc, *ideas)
    for idea_id in ("idea-0", "idea-1", "idea-3"):
        await feed.cast(client, "m1", idea_id)
    await feed.retract(client, "m1", "idea-1")
    await feed.cast(client, "m2", "idea-2")

    asked = pb.ListMyVotesRequest(idea_ids=["idea-0", "idea-1", "idea-2"], page_size=100)
    answer = await client.ListMyVotes(asked, metadata=metadata("m1"))
    assert [v.idea_id for v in answer.votes] == ["idea-0"]
    assert answer.next_page_token == ""

    # Paged, the filter stays bound to the token.
    first = await client.ListMyVotes(
        pb.ListMyVotesRequest(idea_ids=["idea-0", "idea-3"], page_size=1), metadata=metadata("m1")
    )
    second = await client.ListMyVotes(
        pb.ListMyVotesRequest(
            idea_ids=["idea-3", "idea-0"], page_size=1, page_token=first.next_page_token
        ),
        metadata=metadata("m1"),
    )
    assert [v.idea_id for v in [*first.votes, *second.votes]] == ["idea-3", "idea-0"]
    changed = pb.ListMyVotesRequest(idea_ids=["idea-2"], page_token=first.next_page_token)
    error = await feed.expect_error(
        client.ListMyVotes(changed, metadata=metadata("m1")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert "page_token" in violated_fields(error)

    too_many = pb.ListMyVotesRequest(idea_ids=[f"idea-{n}" for n in range(501)])
    error = await feed.expect_error(
        client.ListMyVotes(too_many, metadata=metadata("m1")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violated_fields(error) == {"idea_ids"}
    blank = pb.ListMyVotesRequest(idea_ids=["idea-0", ""])
    error = await feed.expect_error(
        client.ListMyVotes(blank, metadata=metadata("m1")), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert violated_fields(error) == {"idea_ids[1]"}


async def test_a_member_cannot_read_someone_elses_votes_but_a_pm_can(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.cast(client, "m1", "idea-1")

    error = await feed.expect_error(
        client.ListMyVotes(pb.ListMyVotesRequest(member_id="m1"), metadata=metadata("m2")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "PERMISSION_DENIED"
    answer = await client.ListMyVotes(pb.ListMyVotesRequest(member_id="m1"), metadata=PM)
    assert [v.idea_id for v in answer.votes] == ["idea-1"]


async def test_supporters_are_listed_for_pms_with_tier_and_weight(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.change_tier(svc, "m2", "core", 1)
    await feed.wait_for_tier(svc, "m2", 1)
    for member in ("m1", "m2", "m3"):
        await feed.cast(client, member, "idea-1")
    await feed.retract(client, "m3", "idea-1")

    first = await client.ListSupporters(
        pb.ListSupportersRequest(idea_id="idea-1", page_size=1), metadata=PM
    )
    second = await client.ListSupporters(
        pb.ListSupportersRequest(idea_id="idea-1", page_size=1, page_token=first.next_page_token),
        metadata=PM,
    )

    supporters = [*first.supporters, *second.supporters]
    assert [(s.member_id, s.tier, s.weight) for s in supporters] == [
        ("m1", "newcomer", 1),
        ("m2", "core", 3),
    ]
    assert second.next_page_token == ""


async def test_supporters_and_history_need_a_pm_before_anything_is_looked_up(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    member = metadata("m1")

    for call in (
        client.ListSupporters(pb.ListSupportersRequest(idea_id="nope"), metadata=member),
        client.ListVoteHistory(pb.ListVoteHistoryRequest(idea_id="nope"), metadata=member),
    ):
        await feed.expect_error(call, grpc.StatusCode.PERMISSION_DENIED)
    for call in (
        client.ListSupporters(pb.ListSupportersRequest(idea_id="nope"), metadata=PM),
        client.ListVoteHistory(pb.ListVoteHistoryRequest(idea_id="nope"), metadata=PM),
    ):
        await feed.expect_error(call, grpc.StatusCode.NOT_FOUND)


async def test_the_history_records_casts_retracts_and_reweights_in_order(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.cast(client, "m1", "idea-1")
    await feed.retract(client, "m1", "idea-1")
    await feed.cast(client, "m1", "idea-1")
    await feed.change_tier(svc, "m1", "member", 1)
    await feed.tally_settles(client, "idea-1", score=2, voters=1)

    answer = await client.ListVoteHistory(pb.ListVoteHistoryRequest(idea_id="idea-1"), metadata=PM)

    assert [(e.action, e.cause, e.weight, e.previous_weight, e.tier) for e in answer.entries] == [
        (pb.VOTE_ACTION_CAST, pb.VOTE_CAUSE_MEMBER, 1, 0, "newcomer"),
        (pb.VOTE_ACTION_RETRACT, pb.VOTE_CAUSE_MEMBER, 0, 1, "newcomer"),
        (pb.VOTE_ACTION_CAST, pb.VOTE_CAUSE_MEMBER, 1, 0, "newcomer"),
        (pb.VOTE_ACTION_REWEIGHT, pb.VOTE_CAUSE_TIER_CHANGE, 2, 1, "member"),
    ]
    assert all(e.member_id == "m1" and e.HasField("event_time") for e in answer.entries)


async def test_a_page_token_with_another_filter_is_invalid(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a", "b")
    for member in ("m1", "m2"):
        await feed.cast(client, member, "a")
    first = await client.ListSupporters(
        pb.ListSupportersRequest(idea_id="a", page_size=1), metadata=PM
    )

    error = await feed.expect_error(
        client.ListSupporters(
            pb.ListSupportersRequest(idea_id="b", page_size=1, page_token=first.next_page_token),
            metadata=PM,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violated_fields(error) == {"page_token"}


async def test_batch_tallies_come_in_the_order_asked_with_the_unknown_ones_named(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a", "b")
    await feed.cast(client, "m1", "b")
    await feed.tally_settles(client, "b", score=1, voters=1)

    answer = await client.BatchGetTallies(
        pb.BatchGetTalliesRequest(idea_ids=["b", "nope", "a"]), metadata=metadata("m1")
    )

    assert [(t.idea_id, t.weighted_score) for t in answer.tallies] == [("b", 1), ("a", 0)]
    assert list(answer.missing_idea_ids) == ["nope"]
