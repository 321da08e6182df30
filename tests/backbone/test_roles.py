"""COCREATE_ROLE: a service's calls and its event work (relay, consumers,
background loops) in separate processes, which together do what one does."""

from __future__ import annotations

import uuid

import grpc
import pytest
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import config
from tests.support import (
    Platform,
    cast_when_known,
    emit_all,
    eventually,
    idea_submitted,
    metadata,
    stub,
)


async def test_an_events_process_answers_health_but_no_service_call(platform: Platform) -> None:
    events = await platform.start("votes", {"COCREATE_ROLE": "events"})
    health = stub(events, health_pb2_grpc.HealthStub)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(events, votes_grpc.VoteServiceStub).CastVote(
            votes_pb.CastVoteRequest(idea_id=str(uuid.uuid4())), metadata=metadata("m-1")
        )
    assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_a_calls_process_and_an_events_process_do_what_one_process_does(
    platform: Platform,
) -> None:
    calls = await platform.start("votes", {"COCREATE_ROLE": "calls"})
    await platform.start("votes", {"COCREATE_ROLE": "events"})
    idea_id = str(uuid.uuid4())
    # The idea's event is relayed and consumed by the events process…
    await emit_all(calls, "ideas", [idea_submitted(idea_id)])
    votes = stub(calls, votes_grpc.VoteServiceStub)
    # …so the calls process, which consumes nothing, learns of it and takes the vote.
    await cast_when_known(votes, idea_id, "m-1")

    async def folded() -> bool:
        answer = await votes.GetTally(
            votes_pb.GetTallyRequest(idea_id=idea_id), metadata=metadata("m-1")
        )
        return bool(answer.tally.voter_count == 1)

    await eventually(folded)  # the tally folded by the events process

    async def all_published() -> bool:
        async with calls.runtime.pool.acquire() as conn:
            waiting = await conn.fetchval("select count(*) from outbox where published_at is null")
        return bool(waiting == 0)

    await eventually(all_published)  # the vote's event and the tally's, relayed


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(config.ConfigError, match="COCREATE_ROLE"):
        config.role({"COCREATE_ROLE": "everything"})
