"""End to end with the real ideas service: an idea submitted there becomes
votable here through its event, and a vote moves the idea up in the ideas
service's ListIdeas (order=top) through the tally event."""

from __future__ import annotations

import grpc
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc

from tests.support import Platform, eventually, metadata, stub
from tests.votes import feed


async def test_a_vote_lifts_the_idea_in_the_ideas_top_list(platform: Platform) -> None:
    ideas_service = await platform.start("ideas")
    votes_service = await platform.start("votes")
    ideas = stub(ideas_service, ideas_grpc.IdeaServiceStub)
    votes = feed.votes(votes_service)
    product: ideas_pb.CreateProductResponse = await ideas.CreateProduct(
        ideas_pb.CreateProductRequest(name="Maps"), metadata=metadata("admin-1", "admin")
    )
    submitted = []
    for title in ("Offline maps", "Dark mode", "Voice search"):
        answer: ideas_pb.SubmitIdeaResponse = await ideas.SubmitIdea(
            ideas_pb.SubmitIdeaRequest(product_id=product.product.id, title=title),
            metadata=metadata("author"),
        )
        submitted.append(answer.idea.id)
    last = submitted[-1]

    async def voted() -> bool:
        try:
            await feed.cast(votes, "m1", last)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:  # the event is on its way
                return False
            raise
        return True

    await eventually(voted)
    await feed.change_tier(votes_service, "m2", "core", 1)
    await feed.wait_for_tier(votes_service, "m2", 1)
    await feed.cast(votes, "m2", last)

    async def on_top() -> ideas_pb.Idea | None:
        page: ideas_pb.ListIdeasResponse = await ideas.ListIdeas(
            ideas_pb.ListIdeasRequest(
                filter=ideas_pb.IdeaFilter(product_id=product.product.id),
                order=ideas_pb.IDEA_ORDER_TOP,
            ),
            metadata=metadata("reader"),
        )
        first = page.ideas[0]
        return first if first.id == last and first.weighted_score == 1 + 3 else None

    top = await eventually(on_top, within=30)
    assert top is not None
    assert (top.voter_count, dict(top.voters_by_tier)) == (2, {"newcomer": 1, "core": 1})
    tally = await feed.tally(votes, last)
    assert (tally.weighted_score, tally.voter_count) == (top.weighted_score, top.voter_count)
