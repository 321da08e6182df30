"""The transactional outbox and its relay.

`Outbox.emit(conn, event)` writes the event in the caller's transaction, so the
state change and its event commit together or not at all. The relay, a
background task, publishes unpublished rows to JetStream with the event id as
Nats-Msg-Id and stamps them published only after JetStream acknowledged them.
It wakes on NOTIFY (sent at commit) and polls as a fallback, so an RPC never
waits on the broker.

Each event carries the trace context of what wrote it (`tracing.current()`
then). The relay's publish of an event is a span in that trace, so a trace
shows when its events left; the batch that publishes them together is a
span of its own, linked to each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg
from cocreate.events.v1 import envelope_pb2
from google.protobuf import message as pb_message
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import Link, SpanKind

from services.kit import config, db, events, failpoints, tracing, worker

_tracer = trace.get_tracer(__name__)

NOTIFY_CHANNEL = "cocreate_outbox"
PRUNE_EVERY_SECONDS = 3600.0
# How long a batch waits for JetStream's acknowledgements before it is sent again.
ACK_WAIT_SECONDS = 10.0


class Outbox:
    def __init__(self, source: str) -> None:
        self.source = source

    async def emit(
        self,
        conn: asyncpg.Connection,
        message: pb_message.Message,
        *,
        aggregate_id: str,
        aggregate_version: int = 0,
        subject: str | None = None,
    ) -> str:
        """Add an event to the caller's transaction; returns its event id."""
        envelope = events.wrap(
            message,
            source=self.source,
            aggregate_id=aggregate_id,
            aggregate_version=aggregate_version,
            traceparent=tracing.current(),
        )
        rows = _outbox_rows([envelope], [subject or events.subject_for(message)])
        await db.write_all(conn, [rows])
        return envelope.event_id

    async def emit_many(self, conn: asyncpg.Connection, batch: Sequence[PendingEvent]) -> None:
        """Add many events to the caller's transaction in one statement (and one
        NOTIFY), in the order given."""
        await db.write_all(conn, [self.rows(batch)])

    def rows(self, batch: Sequence[PendingEvent]) -> db.Rows:
        """The outbox rows of `batch`, in the order given, for `db.write_all`
        beside the rest of a write (`emit_many` adds them alone)."""
        envelopes = [
            events.wrap(
                item.message,
                source=self.source,
                aggregate_id=item.aggregate_id,
                aggregate_version=item.aggregate_version,
                traceparent=item.traceparent,
            )
            for item in batch
        ]
        return _outbox_rows(
            envelopes, [item.subject or events.subject_for(item.message) for item in batch]
        )


def _outbox_rows(envelopes: Sequence[envelope_pb2.Envelope], subjects: Sequence[str]) -> db.Rows:
    return db.Rows(
        "outbox",
        (("event_id", "uuid"), ("subject", "text"), ("envelope", "bytea")),
        (
            [uuid.UUID(envelope.event_id) for envelope in envelopes],
            list(subjects),
            [envelope.SerializeToString() for envelope in envelopes],
        ),
        # Delivered to the relay's LISTEN only when the transaction commits.
        notify=NOTIFY_CHANNEL,
    )


@dataclass(frozen=True)
class PendingEvent:
    """An event to emit with `Outbox.emit_many`, with the trace of the call
    that caused it (a batch serves many calls, each in its own trace)."""

    message: pb_message.Message
    aggregate_id: str
    aggregate_version: int = 0
    traceparent: str = ""
    # The event type's registered subject unless given.
    subject: str | None = None


class OutboxRelay:
    def __init__(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        *,
        dsn: str,
        stream: str,
        poll_seconds: float = 1.0,
        batch_size: int = 500,
        keep_published_hours: float = 168.0,
        gather_seconds: float = config.DEFAULT_RELAY_GATHER_SECONDS,
    ) -> None:
        self._pool = pool
        self._js = js
        self._dsn = dsn
        self._stream = stream
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        self._keep_published = timedelta(hours=keep_published_hours)
        self._pruned_at = 0.0
        # Under load, at most one batch per this many seconds (unless the
        # last was full; COCREATE_RELAY_GATHER_SECONDS): each round is a
        # transaction here and acknowledgements to wait for, whatever it
        # carries, and at a few calls in flight the votes service commits a
        # write every ~7 ms. A/B at 16 calls in flight, four alternations:
        # 25 ms against 5 ms, the votes event process 0.060-0.073 ms of CPU a
        # vote against 0.080-0.098, NATS 0.034-0.045 against 0.042-0.050.
        # An event waits at most this much longer; a lone commit after a
        # quiet spell is published at once (worker.run_woken).
        self._gather_seconds = gather_seconds

    async def run(self, stop: asyncio.Event) -> None:
        async def step() -> bool:
            more = await self.publish_pending() >= self._batch_size
            if time.monotonic() - self._pruned_at > PRUNE_EVERY_SECONDS:
                await self.prune_published()
            return more

        await worker.run_woken(
            step,
            dsn=self._dsn,
            channel=NOTIFY_CHANNEL,
            poll_seconds=self._poll_seconds,
            stop=stop,
            what="publish the outbox",
            gather_seconds=self._gather_seconds,
        )
        # Stopping: publish what was committed before the server stopped.
        with contextlib.suppress(Exception):
            while await self.publish_pending() >= self._batch_size:
                pass

    async def prune_published(self) -> int:
        """Forget published events older than the retention; JetStream has them,
        and nothing reads them here again. Returns how many were removed."""
        self._pruned_at = time.monotonic()
        removed = await self._pool.execute(
            "delete from outbox where published_at < now() - $1::interval", self._keep_published
        )
        return int(removed.split()[-1])

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished events and mark them sent; return how many.

        The whole batch is sent before any acknowledgement is awaited, so a
        batch costs about one round trip to JetStream, not one per event.
        Rows are marked sent only when every publish of the batch was
        acknowledged; if any failed, none is marked and the batch is sent
        again (JetStream drops the repeats by Nats-Msg-Id, the inboxes
        beyond its window). Events go out in id order; consumers never
        depend on the order across aggregates, and a vote's own events are
        written by one transaction after another."""
        async with self._pool.acquire() as conn, conn.transaction():
            # SKIP LOCKED lets several replicas' relays share the outbox.
            rows = await conn.fetch(
                "select id, event_id, subject, envelope from outbox "
                "where published_at is null order by id limit $1 for update skip locked",
                self._batch_size,
            )
            if not rows:
                return 0
            # Reading each envelope's trace back is only worth it while spans
            # are exported: unrecorded publish spans show nowhere.
            produced = [_trace_of(row["envelope"]) for row in rows] if tracing.exporting() else []
            with _tracer.start_as_current_span(
                "outbox publish",
                links=[Link(context) for context in produced if context.is_valid],
                attributes={"messaging.batch.message_count": len(rows)},
            ):
                await self._publish(rows, produced)
            failpoints.hit("relay.after_publish")
            await conn.execute(
                "update outbox set published_at = now() where id = any($1::bigint[])",
                [row["id"] for row in rows],
            )
        return len(rows)

    async def _publish(
        self, rows: Sequence[asyncpg.Record], produced: Sequence[trace.SpanContext]
    ) -> None:
        """Send every row, then wait for all their acknowledgements. Each
        publish is a span in the trace of the event's producer (`produced`,
        empty while spans are not exported), ended when the batch is
        acknowledged."""
        acks = []
        spans = []
        try:
            for row, producer in zip(rows, produced, strict=False):
                spans.append(
                    _tracer.start_span(
                        f"publish {row['subject']}",
                        context=trace.set_span_in_context(trace.NonRecordingSpan(producer)),
                        kind=SpanKind.PRODUCER,
                        attributes={
                            "messaging.system": "nats",
                            "messaging.destination.name": row["subject"],
                            "messaging.message.id": str(row["event_id"]),
                        },
                    )
                )
            for row in rows:
                acks.append(
                    await self._js.publish_async(
                        row["subject"],
                        row["envelope"],
                        stream=self._stream,
                        headers={"Nats-Msg-Id": str(row["event_id"])},
                    )
                )
            await asyncio.wait_for(asyncio.gather(*acks), timeout=ACK_WAIT_SECONDS)
        finally:
            for ack in acks:  # unanswered ones free their place in the client
                ack.cancel()
            for span in spans:
                span.end()


def _trace_of(stored: bytes) -> trace.SpanContext:
    """The trace context an outbox row's envelope carries (invalid if none)."""
    envelope = envelope_pb2.Envelope()
    envelope.ParseFromString(stored)
    return tracing.span_context_of(envelope.traceparent)
