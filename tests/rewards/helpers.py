"""What the rewards tests share: starting the service, feeding it events the
way the ideas and votes services would, and reading its ledger."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeAlias

from cocreate.events.v1 import envelope_pb2, ideas_events_pb2, votes_events_pb2
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.rewards.v1 import rewards_service_pb2 as pb
from cocreate.rewards.v1 import rewards_service_pb2_grpc as pb_grpc
from google.protobuf import message as pb_message

from services.kit import events
from services.kit.server import RunningService
from tests.support import (
    emit,
    emit_all,
    idea_status_changed,
    idea_submitted,
    metadata,
    stub,
)

ADMIN = metadata("admin-1", "admin")

VoteReason: TypeAlias = votes_events_pb2.VoteChangeReason.ValueType
MEMBER_VOTE = votes_events_pb2.VOTE_CHANGE_REASON_MEMBER


def rewards_stub(service: RunningService) -> pb_grpc.RewardsServiceStub:
    return stub(service, pb_grpc.RewardsServiceStub)


async def submit(service: RunningService, idea_id: str, author_id: str) -> str:
    [event_id] = await emit_all(service, "ideas", [idea_submitted(idea_id, author_id)])
    return event_id


async def change_status(
    service: RunningService,
    idea_id: str,
    author_id: str,
    new_status: idea_status_pb2.IdeaStatus.ValueType,
    version: int,
) -> str:
    changed = idea_status_changed(idea_id, new_status, version, author_id)
    [event_id] = await emit_all(service, "ideas", [changed])
    return event_id


async def publish_release(service: RunningService, release_id: str, idea_ids: list[str]) -> str:
    """The ideas service's event of a release cut shipping these ideas."""
    return await emit(
        service,
        ideas_events_pb2.ReleasePublished(release_id=release_id, shipped_idea_ids=idea_ids),
        source="ideas",
        aggregate_id=release_id,
        aggregate_version=1,
    )


async def cast(
    service: RunningService,
    idea_id: str,
    member_id: str,
    version: int = 1,
    reason: VoteReason = MEMBER_VOTE,
    at: datetime | None = None,
) -> str:
    """A VoteCast; `at` sets cast_at (the envelope's time otherwise)."""
    event = votes_events_pb2.VoteCast(
        idea_id=idea_id, member_id=member_id, weight=1, reason=reason, vote_version=version
    )
    if at is not None:
        event.cast_time.FromDatetime(at)
    return await emit(
        service,
        event,
        source="votes",
        aggregate_id=f"{idea_id}/{member_id}",
        aggregate_version=version,
    )


async def retract(
    service: RunningService,
    idea_id: str,
    member_id: str,
    version: int,
    reason: VoteReason = MEMBER_VOTE,
    at: datetime | None = None,
) -> str:
    """A VoteRetracted; `at` sets retracted_at (the envelope's time otherwise)."""
    event = votes_events_pb2.VoteRetracted(
        idea_id=idea_id, member_id=member_id, reason=reason, vote_version=version
    )
    if at is not None:
        event.retract_time.FromDatetime(at)
    return await emit(
        service,
        event,
        source="votes",
        aggregate_id=f"{idea_id}/{member_id}",
        aggregate_version=version,
    )


async def handled(service: RunningService, event_id: str) -> bool:
    """Whether a rewards consumer has handled the event."""
    return bool(
        await service.runtime.pool.fetchval(
            "select exists (select 1 from inbox where event_id = $1::uuid)", event_id
        )
    )


async def entries(service: RunningService, member_id: str, rule_id: str | None = None) -> list[Any]:
    return list(
        await service.runtime.pool.fetch(
            "select * from ledger_entries where member_id = $1 "
            "and ($2::text is null or rule_id = $2) order by seq",
            member_id,
            rule_id,
        )
    )


async def balance(service: RunningService, member_id: str) -> int:
    answer = await rewards_stub(service).GetAccount(
        pb.GetAccountRequest(member_id=member_id), metadata=ADMIN
    )
    return int(answer.account.balance)


async def emitted(service: RunningService, subject: str) -> list[envelope_pb2.Envelope]:
    """The events the service wrote to its outbox on `subject`, in order."""
    rows = await service.runtime.pool.fetch(
        "select envelope from outbox where subject = $1 order by id", subject
    )
    found = []
    for row in rows:
        envelope = envelope_pb2.Envelope()
        envelope.ParseFromString(row["envelope"])
        found.append(envelope)
    return found


def subject_of(message_type: type[pb_message.Message]) -> str:
    return events.subject_for(message_type)
