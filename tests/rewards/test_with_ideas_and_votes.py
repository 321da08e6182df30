"""Rewards with the real ideas and votes services, talking only through events:
points earned by a submission and votes, and a tier crossing that re-weights
the member's votes on open ideas."""

from __future__ import annotations

import grpc
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.rewards.v1 import rewards_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2 as votes
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from tests.rewards.helpers import ADMIN, rewards_stub
from tests.support import Platform, eventually, metadata, stub


async def test_a_tier_crossing_reaches_the_votes_service_and_reweights_open_votes(
    platform: Platform,
) -> None:
    ideas_client = stub(await platform.start("ideas"), ideas_grpc.IdeaServiceStub)
    votes_client = stub(await platform.start("votes"), votes_grpc.VoteServiceStub)
    rewards = rewards_stub(await platform.start("rewards"))
    product = await ideas_client.CreateProduct(
        ideas.CreateProductRequest(name="Phone OS"), metadata=ADMIN
    )
    idea = await ideas_client.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.product.id, title="Split-screen calls"),
        metadata=metadata("author"),
    )
    idea_id = idea.idea.id

    async def cast() -> bool:
        try:
            await votes_client.CastVote(
                votes.CastVoteRequest(idea_id=idea_id), metadata=metadata("fan")
            )
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return False  # the votes service has not heard of the idea yet
            raise
        return True

    await eventually(cast)

    async def earned() -> bool:
        author = await rewards.GetAccount(pb.GetAccountRequest(member_id="author"), metadata=ADMIN)
        fan = await rewards.GetAccount(pb.GetAccountRequest(member_id="fan"), metadata=ADMIN)
        return (author.account.balance, fan.account.balance) == (5, 1)

    await eventually(earned)
    crossed = await rewards.GrantPoints(
        pb.GrantPointsRequest(member_id="fan", amount=99, reason="event host"), metadata=ADMIN
    )
    assert crossed.account.tier == "member"

    async def reweighted() -> bool:
        answer = await votes_client.GetTally(
            votes.GetTallyRequest(idea_id=idea_id), metadata=metadata("pm-1", "pm")
        )
        return bool(answer.tally.weighted_score == 2)

    await eventually(reweighted)
