"""Voting bans: a PM voiding a spam account's votes may ban the member from
casting again until a PM or admin lifts the ban."""

from __future__ import annotations

import grpc
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.votes.v1 import votes_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2_grpc as pb_grpc

from services.kit.server import RunningService
from tests.support import Platform, error_reason, metadata, violated_fields
from tests.votes import feed

ADMIN = metadata("admin-1", "admin")
PM = metadata("pm-1", "pm")


async def ban_records(svc: RunningService) -> list[tuple[str, bool, str, str]]:
    rows = await svc.runtime.pool.fetch(
        "select member_id, banned, actor_id, reason from vote_bans order by id"
    )
    return [(r["member_id"], r["banned"], r["actor_id"], r["reason"]) for r in rows]


async def void_and_ban(
    client: pb_grpc.VoteServiceStub, member_id: str
) -> pb.VoidMemberVotesResponse:
    answer: pb.VoidMemberVotesResponse = await client.VoidMemberVotes(
        pb.VoidMemberVotesRequest(member_id=member_id, reason="sock puppet", ban=True),
        metadata=PM,
    )
    return answer


async def cast_is_banned(client: pb_grpc.VoteServiceStub, member_id: str, idea_id: str) -> None:
    error = await feed.expect_error(
        client.CastVote(
            pb.CastVoteRequest(idea_id=idea_id, request_id="banned-cast"),
            metadata=metadata(member_id),
        ),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert error_reason(error) == "VOTING_BANNED"


async def test_a_void_with_ban_blocks_casting_and_retracting_still_works(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a", "b")
    await feed.cast(client, "spammer", "a")

    answer = await void_and_ban(client, "spammer")

    assert (answer.voided_vote_count, answer.banned) == (1, True)
    assert await ban_records(svc) == [("spammer", True, "pm-1", "sock puppet")]
    for idea_id in ("a", "b"):
        await cast_is_banned(client, "spammer", idea_id)
    # Nothing changed: no vote, no history, no cast event beyond the first.
    assert not await svc.runtime.pool.fetchval(
        "select exists (select from votes where member_id = 'spammer' and active)"
    )
    assert await svc.runtime.pool.fetchval("select count(*) from votes") == 1
    history = await client.ListVoteHistory(pb.ListVoteHistoryRequest(idea_id="a"), metadata=PM)
    assert [e.action for e in history.entries] == [pb.VOTE_ACTION_CAST, pb.VOTE_ACTION_RETRACT]
    casts = await feed.outbox_events(svc, "cocreate.votes.vote.cast", events_pb.VoteCast)
    assert len(casts) == 1
    retracted = await feed.retract(client, "spammer", "a")
    assert not retracted.active


async def test_lifting_a_ban_restores_casting_and_is_recorded(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a")
    await void_and_ban(client, "spammer")
    await cast_is_banned(client, "spammer", "a")

    lifted = await client.LiftVoteBan(
        pb.LiftVoteBanRequest(member_id="spammer", reason="appeal accepted", request_id="l-1"),
        metadata=ADMIN,
    )

    assert lifted.lifted
    vote = await feed.cast(client, "spammer", "a")
    assert vote.active
    await feed.tally_settles(client, "a", score=1, voters=1)
    again = await client.LiftVoteBan(
        pb.LiftVoteBanRequest(member_id="spammer", reason="again"), metadata=PM
    )
    assert not again.lifted
    replayed = await client.LiftVoteBan(
        pb.LiftVoteBanRequest(member_id="spammer", reason="retry", request_id="l-1"),
        metadata=ADMIN,
    )
    assert replayed == lifted
    assert await ban_records(svc) == [
        ("spammer", True, "pm-1", "sock puppet"),
        ("spammer", False, "admin-1", "appeal accepted"),
    ]
    lifted_at = await svc.runtime.pool.fetchval(
        "select occurred_at from vote_bans where not banned"
    )
    assert lifted_at is not None


async def test_only_pms_and_admins_lift_a_ban(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a")
    await void_and_ban(client, "spammer")

    for request in (
        pb.LiftVoteBanRequest(member_id="spammer", reason="let me vote"),
        pb.LiftVoteBanRequest(),
    ):
        for caller in ("spammer", "friend"):
            await feed.expect_error(
                client.LiftVoteBan(request, metadata=metadata(caller)),
                grpc.StatusCode.PERMISSION_DENIED,
            )

    assert await ban_records(svc) == [("spammer", True, "pm-1", "sock puppet")]
    await cast_is_banned(client, "spammer", "a")


async def test_a_lift_or_ban_without_member_or_reason_is_invalid_and_changes_nothing(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a")
    await feed.cast(client, "m1", "a")
    await void_and_ban(client, "spammer")

    for request, fields in (
        (pb.LiftVoteBanRequest(), {"member_id", "reason"}),
        (pb.LiftVoteBanRequest(member_id="spammer"), {"reason"}),
        (pb.LiftVoteBanRequest(member_id="spammer", reason="   "), {"reason"}),
        (pb.LiftVoteBanRequest(reason="appeal"), {"member_id"}),
        (pb.LiftVoteBanRequest(member_id="spammer", reason="x" * 501), {"reason"}),
    ):
        error = await feed.expect_error(
            client.LiftVoteBan(request, metadata=PM), grpc.StatusCode.INVALID_ARGUMENT
        )
        assert violated_fields(error) == fields
    error = await feed.expect_error(
        client.VoidMemberVotes(pb.VoidMemberVotesRequest(member_id="m1", ban=True), metadata=PM),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert violated_fields(error) == {"reason"}

    assert await ban_records(svc) == [("spammer", True, "pm-1", "sock puppet")]
    assert await svc.runtime.pool.fetchval("select count(*) from vote_voids") == 1
    assert (await feed.cast(client, "m1", "a")).active
    await cast_is_banned(client, "spammer", "a")


async def test_a_void_without_ban_leaves_casting_allowed(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "a")
    await feed.cast(client, "m1", "a")

    answer = await client.VoidMemberVotes(
        pb.VoidMemberVotesRequest(member_id="m1", reason="mistake?"), metadata=PM
    )

    assert (answer.voided_vote_count, answer.banned) == (1, False)
    assert await ban_records(svc) == []
    vote = await feed.cast(client, "m1", "a")
    assert vote.active
    await feed.tally_settles(client, "a", score=1, voters=1)
