"""Helpers for the votes tests: feed the service the ideas and rewards events
it consumes (written through the kit outbox under the producing service's
name, so the relay publishes them to the same stream the consumers read),
cast votes as members, and wait for the folded tallies."""

from __future__ import annotations

from typing import Any

import grpc
from cocreate.events.v1 import envelope_pb2, ideas_events_pb2, rewards_events_pb2
from cocreate.events.v1 import votes_events_pb2 as events_pb
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.votes.v1 import votes_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2_grpc as pb_grpc

from services.kit.server import RunningService
from tests.support import (
    emit,
    emit_all,
    eventually,
    idea_status_changed,
    idea_submitted,
    metadata,
    stub,
)

VOTES_CHANGED = "cocreate.votes.votes.changed"


async def submit_ideas(svc: RunningService, *idea_ids: str) -> None:
    """Announce the ideas and wait until the votes service knows them all."""
    await emit_all(svc, "ideas", [idea_submitted(i) for i in idea_ids])

    async def known() -> bool:
        count = await svc.runtime.pool.fetchval(
            "select count(*) from ideas where idea_id = any($1::text[])", list(idea_ids)
        )
        return bool(count == len(set(idea_ids)))

    await eventually(known, within=60)


async def change_status(
    svc: RunningService, idea_id: str, status: idea_status_pb2.IdeaStatus.ValueType, version: int
) -> None:
    await emit_all(svc, "ideas", [idea_status_changed(idea_id, status, version)])


async def wait_for_status(
    svc: RunningService, idea_id: str, status: idea_status_pb2.IdeaStatus.ValueType
) -> None:
    async def reached() -> bool:
        stored = await svc.runtime.pool.fetchval(
            "select status from ideas where idea_id = $1", idea_id
        )
        return bool(stored == status)

    await eventually(reached)


async def close(svc: RunningService, idea_id: str, version: int = 2) -> None:
    await change_status(svc, idea_id, idea_status_pb2.IDEA_STATUS_SHIPPED, version)
    await wait_for_status(svc, idea_id, idea_status_pb2.IDEA_STATUS_SHIPPED)


async def merge(svc: RunningService, source_id: str, target_id: str) -> None:
    merged = ideas_events_pb2.IdeasMerged(source_idea_id=source_id, target_idea_id=target_id)
    await emit(svc, merged, source="ideas", aggregate_id=source_id)


async def change_tier(svc: RunningService, member_id: str, tier: str, version: int) -> None:
    changed = rewards_events_pb2.TierChanged(member_id=member_id, new_tier=tier, version=version)
    await emit(svc, changed, source="rewards", aggregate_id=member_id, aggregate_version=version)


async def wait_for_tier(svc: RunningService, member_id: str, version: int) -> None:
    async def stored() -> bool:
        found = await svc.runtime.pool.fetchval(
            "select version from members where member_id = $1", member_id
        )
        return found is not None and found >= version

    await eventually(stored)


def votes(svc: RunningService) -> pb_grpc.VoteServiceStub:
    return stub(svc, pb_grpc.VoteServiceStub)


async def cast(
    client: pb_grpc.VoteServiceStub, member_id: str, idea_id: str, request_id: str = ""
) -> pb.Vote:
    answer: pb.CastVoteResponse = await client.CastVote(
        pb.CastVoteRequest(idea_id=idea_id, request_id=request_id), metadata=metadata(member_id)
    )
    return answer.vote


async def retract(client: pb_grpc.VoteServiceStub, member_id: str, idea_id: str) -> pb.Vote:
    answer: pb.RetractVoteResponse = await client.RetractVote(
        pb.RetractVoteRequest(idea_id=idea_id), metadata=metadata(member_id)
    )
    return answer.vote


async def tally(client: pb_grpc.VoteServiceStub, idea_id: str) -> pb.Tally:
    answer: pb.GetTallyResponse = await client.GetTally(
        pb.GetTallyRequest(idea_id=idea_id), metadata=metadata("x")
    )
    return answer.tally


async def tally_settles(
    client: pb_grpc.VoteServiceStub, idea_id: str, score: int, voters: int, within: float = 20
) -> pb.Tally:
    """Wait until the folded tally of the idea has this score and voter count."""

    async def probe() -> pb.Tally | None:
        found = await tally(client, idea_id)
        return found if (found.weighted_score, found.voter_count) == (score, voters) else None

    result = await eventually(probe, within=within)
    assert result is not None
    return result


async def folded(svc: RunningService) -> None:
    """Wait until every committed vote change is folded into the tallies."""

    async def done() -> bool:
        return not await svc.runtime.pool.fetchval("select exists (select from tally_dirty)")

    await eventually(done, within=60)


async def outbox_events(svc: RunningService, subject: str, kind: type[Any]) -> list[Any]:
    """The payloads of the events the votes service wrote on `subject`, in
    order; votes written together (VotesChanged) count as the casts or
    retracts they carry."""
    rows = await svc.runtime.pool.fetch(
        "select subject, envelope from outbox where subject = any($1::text[]) order by id",
        [subject, VOTES_CHANGED],
    )
    found: list[Any] = []
    for row in rows:
        envelope = envelope_pb2.Envelope()
        envelope.ParseFromString(row["envelope"])
        if envelope.source != "votes":
            continue
        if row["subject"] == VOTES_CHANGED and row["subject"] != subject:
            written = events_pb.VotesChanged()
            envelope.payload.Unpack(written)
            if kind is events_pb.VoteCast:
                found.extend(written.casts)
            elif kind is events_pb.VoteRetracted:
                found.extend(written.retracts)
            continue
        message = kind()
        envelope.payload.Unpack(message)
        found.append(message)
    return found


async def expect_error(call: Any, code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    try:
        await call
    except grpc.aio.AioRpcError as error:
        assert error.code() == code, f"{error.code()}: {error.details()}"
        return error
    raise AssertionError(f"expected {code}, the call succeeded")


async def tally_events(svc: RunningService) -> list[Any]:
    """The tallies the votes service's folds announced, in order."""
    events = await outbox_events(svc, "cocreate.votes.tallies.changed", events_pb.TalliesChanged)
    return [tally for event in events for tally in event.tallies]
