"""End to end with the real votes service: ideas announce themselves, members
vote, a merge chain moves every vote to the final target, and the ideas read
model ends equal to the votes service's tallies."""

from __future__ import annotations

import grpc
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from tests.ideas.helpers import PM, start_ideas
from tests.support import Platform, eventually, metadata, stub


async def test_a_merge_chain_ends_with_all_votes_on_the_final_target(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    votes_service = await platform.start("votes")
    votes = stub(votes_service, votes_grpc.VoteServiceStub)
    product = await ideas.product()
    a, b, c = [await ideas.submit(product.id, f"Offline maps {n}") for n in "abc"]

    async def cast(member: str, idea_id: str) -> None:
        async def accepted() -> bool:
            try:
                await votes.CastVote(
                    votes_pb.CastVoteRequest(idea_id=idea_id), metadata=metadata(member)
                )
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.NOT_FOUND:  # not announced yet
                    return False
                raise
            return True

        await eventually(accepted)

    supporters = {"m1": [a], "m2": [a, b], "m3": [b, c], "m4": [c]}
    for member, voted in supporters.items():
        for idea in voted:
            await cast(member, idea.id)

    for source, target in ((a, b), (b, c)):
        await ideas.api.MergeIdeas(
            pb.MergeIdeasRequest(source_idea_id=source.id, target_idea_id=target.id), metadata=PM
        )

    async def tally(idea_id: str) -> votes_pb.Tally:
        answer: votes_pb.GetTallyResponse = await votes.GetTally(
            votes_pb.GetTallyRequest(idea_id=idea_id), metadata=PM
        )
        return answer.tally

    async def settled() -> bool:
        final, first, middle = await tally(c.id), await tally(a.id), await tally(b.id)
        if (final.voter_count, first.voter_count, middle.voter_count) != (4, 0, 0):
            return False
        shown = await ideas.get(c.id)
        return (
            (shown.voter_count, shown.weighted_score, dict(shown.voters_by_tier))
            == (
                final.voter_count,
                final.weighted_score,
                dict(final.voters_by_tier),
            )
            and (await ideas.get(a.id)).voter_count == 0
            and (await ideas.get(b.id)).voter_count == 0
        )

    await eventually(settled, within=30)
    assert (await tally(c.id)).weighted_score > 0
