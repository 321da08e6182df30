"""The event envelope and the subject of each event type.

Subjects follow cocreate.<service>.<entity>.<verb>. Each event's subject is declared
on its message in protos/cocreate/events/v1 (the `subject` option) and read
here, so producers and consumers cannot disagree.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from cocreate.events.v1 import (
    envelope_pb2,
    ideas_events_pb2,
    rewards_events_pb2,
    subject_pb2,
    votes_events_pb2,
)
from google.protobuf import message as pb_message
from google.protobuf import timestamp_pb2

EVENT_FILES = (ideas_events_pb2, votes_events_pb2, rewards_events_pb2)


def _declared_subjects() -> dict[str, str]:
    """Each event message's subject, as its .proto declares it (the
    cocreate.events.v1.subject option); a message without one (a part of an
    event, such as VotesChanged's casts) is not published alone."""
    found: dict[str, str] = {}
    for module in EVENT_FILES:
        for message in module.DESCRIPTOR.message_types_by_name.values():
            subject = message.GetOptions().Extensions[subject_pb2.subject]
            if subject:
                found[message.full_name] = subject
    return found


SUBJECTS: dict[str, str] = _declared_subjects()

ALL_SUBJECTS = "cocreate.>"


def subject_for(message_type: type[pb_message.Message] | pb_message.Message) -> str:
    name = message_type.DESCRIPTOR.full_name
    try:
        return SUBJECTS[name]
    except KeyError:
        raise KeyError(f"no subject is registered for event type {name}") from None


def timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromDatetime(value)
    return stamp


def now_timestamp() -> timestamp_pb2.Timestamp:
    return timestamp(datetime.now(UTC))


def wrap(
    message: pb_message.Message,
    *,
    source: str,
    aggregate_id: str,
    aggregate_version: int = 0,
    traceparent: str = "",
) -> envelope_pb2.Envelope:
    envelope = envelope_pb2.Envelope(
        event_id=str(uuid.uuid4()),
        type=message.DESCRIPTOR.full_name,
        source=source,
        aggregate_id=aggregate_id,
        aggregate_version=aggregate_version,
        event_time=now_timestamp(),
        traceparent=traceparent,
    )
    envelope.payload.Pack(message)
    return envelope


M = TypeVar("M", bound=pb_message.Message)
N = TypeVar("N", bound=pb_message.Message)


@dataclass(frozen=True)
class Event(Generic[M]):
    """A received event: its envelope, its unpacked payload and where it came from."""

    envelope: envelope_pb2.Envelope
    message: M
    subject: str

    @property
    def event_id(self) -> str:
        return self.envelope.event_id

    @property
    def aggregate_version(self) -> int:
        return self.envelope.aggregate_version

    @property
    def event_time(self) -> datetime:
        return self.envelope.event_time.ToDatetime(tzinfo=UTC)

    def carrying(self, item: N) -> Event[N]:
        """One item of a batch event (VotesChanged's casts, PointsAwardedTogether's
        awards) as an event of its own, in the same envelope: the handlers of
        single events serve the batch's items."""
        return Event(self.envelope, item, self.subject)
