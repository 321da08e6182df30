"""A hidden idea is, for members, no idea at all in the votes service: casts
and retracts answer NOT_FOUND, its tally is not found or missing; PMs still
see the tally. Showing it again (IdeaUnhidden) makes it votable again, and a
late, older hide or show changes nothing."""

from __future__ import annotations

import grpc
from cocreate.events.v1 import ideas_events_pb2
from cocreate.votes.v1 import votes_service_pb2 as pb

from services.kit.server import RunningService
from tests.support import Platform, emit, eventually, metadata
from tests.votes import feed

PM = metadata("pm-1", "pm")


async def _hidden(svc: RunningService, idea_id: str, hidden: bool, version: int) -> None:
    message = (
        ideas_events_pb2.IdeaHidden(idea_id=idea_id, reason="spam", spam=True)
        if hidden
        else ideas_events_pb2.IdeaUnhidden(idea_id=idea_id, reason="not spam after all")
    )
    handled = "select count(*) from inbox where consumer = 'votes-ideas'"
    before = await svc.runtime.pool.fetchval(handled)
    await emit(svc, message, source="ideas", aggregate_id=idea_id, aggregate_version=version)

    async def handled_it() -> bool:
        return bool(await svc.runtime.pool.fetchval(handled) > before)

    await eventually(handled_it)


async def test_members_cannot_vote_on_or_read_a_hidden_idea(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "spammy", "fine")
    await feed.cast(client, "early", "spammy")
    # The staff's tally below is the folded one: let the fold land first.
    await feed.tally_settles(client, "spammy", score=1, voters=1)
    await _hidden(svc, "spammy", True, 2)

    for call in (
        client.CastVote(pb.CastVoteRequest(idea_id="spammy"), metadata=metadata("m1")),
        client.RetractVote(pb.RetractVoteRequest(idea_id="spammy"), metadata=metadata("early")),
        client.GetTally(pb.GetTallyRequest(idea_id="spammy"), metadata=metadata("m1")),
    ):
        await feed.expect_error(call, grpc.StatusCode.NOT_FOUND)
    batch = await client.BatchGetTallies(
        pb.BatchGetTalliesRequest(idea_ids=["spammy", "fine"]), metadata=metadata("m1")
    )
    assert list(batch.missing_idea_ids) == ["spammy"]
    assert [t.idea_id for t in batch.tallies] == ["fine"]
    staff = await client.GetTally(pb.GetTallyRequest(idea_id="spammy"), metadata=PM)
    assert staff.tally.voter_count == 1

    await _hidden(svc, "spammy", False, 3)
    await _hidden(svc, "spammy", True, 2)  # a late, older hide: ignored
    assert not await svc.runtime.pool.fetchval("select hidden from ideas where idea_id = 'spammy'")
    await feed.cast(client, "m1", "spammy")
    await feed.tally_settles(client, "spammy", score=2, voters=2)
