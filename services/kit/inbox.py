"""The inbox consumer: a durable JetStream pull consumer that applies each event once.

For every message: in one transaction, record the event id in `inbox` and run
the handler; commit; then ack. A redelivery (after a crash between commit and
ack, or a re-publish) finds the inbox row and changes nothing. A handler that
fails is retried with backoff (nak with delay); after its Delivery's
`max_deliver` deliveries (COCREATE_CONSUMER_MAX_DELIVER, applied by the kit to
every consumer it runs) the event is parked in `dead_letters` with its error,
and acked so it no longer blocks. Infrastructure failures (the database away)
are retried without counting towards parking.

Tracing: handling an event is a span that continues the trace its envelope
carries (the producer's), so the events a handler emits, and their handling
by the next service, stay in the trace of the call that started it all. A
transaction applying many events is a span linked to each of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
import nats.errors
from cocreate.events.v1 import envelope_pb2
from google.protobuf import message as pb_message
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind

from services.kit import events, failpoints, jetstream, log, tracing, worker
from services.kit.errors import CONFLICT_ERRORS, INFRASTRUCTURE_ERRORS

if TYPE_CHECKING:
    from services.kit.metrics import ServiceMetrics

Handler = Callable[[asyncpg.Connection, events.Event[Any]], Awaitable[None]]


@dataclass(frozen=True)
class Batched:
    """A handler that takes a run of consecutive events of its type at once
    (in order, in the batch's transaction), for events so frequent that a few
    statements per run beat a few per event."""

    handle: Callable[[asyncpg.Connection, list[events.Event[Any]]], Awaitable[None]]


@dataclass(frozen=True)
class Delivery:
    """How many times a failing event is tried, and how long apart, before it
    is parked. The kit gives every consumer it runs the configured one
    (COCREATE_CONSUMER_MAX_DELIVER, COCREATE_CONSUMER_BACKOFF_SECONDS)."""

    max_deliver: int = 5
    # The delay before the 2nd, 3rd, … delivery; the last repeats.
    backoff_seconds: tuple[float, ...] = (0.2, 1.0, 3.0, 10.0, 30.0)


_log = log.get("inbox")
_tracer = trace.get_tracer(__name__)

# How long one fetch waits for events; a stop does not wait for it.
FETCH_WAIT_SECONDS = 1.0

T = TypeVar("T")


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """The result of `work`, or None (and `work` cancelled) once `stop` is set."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


def _envelope(msg: Msg) -> envelope_pb2.Envelope | None:
    """The message's envelope, or None when it is not one of ours."""
    envelope = envelope_pb2.Envelope()
    try:
        envelope.ParseFromString(msg.data)
        uuid.UUID(envelope.event_id)
    except Exception:
        return None
    return envelope


def _links(applied: Sequence[envelope_pb2.Envelope]) -> list[Link]:
    found = (tracing.span_context_of(envelope.traceparent) for envelope in applied)
    return [Link(context) for context in found if context.is_valid]


async def applied_all_published(
    js: JetStreamContext, stream: str, consumer: str, *, within: float
) -> bool:
    """Wait until `consumer` has applied every event of its subjects that is in
    `stream` now, for a handler that must not act before another consumer of
    the same service has heard of what was published before its own event.

    True once it has: its ack floor passed the stream's last sequence as it
    was on entry, or nothing of its subjects is left undelivered or unacked
    (the stream's tail may be other subjects, which it never acks). False when
    `within` seconds passed first, or JetStream could not say (away, electing,
    the consumer not created yet): the caller then goes on as it would have
    without waiting."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    delay = 0.005
    target: int | None = None
    while True:
        with contextlib.suppress(*jetstream.ELECTION_ERRORS, nats.errors.Error):
            if target is None:
                target = (await js.stream_info(stream)).state.last_seq
            info = await js.consumer_info(stream, consumer)
            floor = info.ack_floor.stream_seq if info.ack_floor else 0
            if floor >= target or not (info.num_pending or info.num_ack_pending):
                return True
        if loop.time() + delay > deadline:
            return False
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.2)


class InboxConsumer:
    def __init__(
        self,
        name: str,
        handlers: Mapping[type[pb_message.Message], Handler | Batched],
        *,
        subjects: Sequence[str] | None = None,
        delivery: Delivery = Delivery(),
        batch_size: int = 200,
        ack_wait_seconds: float = 30.0,
        gather_seconds: float = 0.02,
        apply_together: bool = True,
    ) -> None:
        self.name = name
        # The replica this consumer runs in (COCREATE_INSTANCE), recorded with
        # each event it handles: replicas share the durable consumer.
        self.handled_by = ""
        self._handlers = {cls.DESCRIPTOR.full_name: (cls, h) for cls, h in handlers.items()}
        self.subjects = list(subjects or [events.subject_for(cls) for cls in handlers])
        self.delivery = delivery
        self._batch_size = batch_size
        self._ack_wait = ack_wait_seconds
        self._gather_seconds = gather_seconds
        # False for handlers that take locks in a global order: events applied
        # together would hold one event's locks while taking the next one's.
        self._apply_together = apply_together

    def handled(self) -> dict[str, Handler | Batched]:
        """The handler of each event type (full name) this consumer takes."""
        return {name: handler for name, (_, handler) in self._handlers.items()}

    async def run(
        self,
        pool: asyncpg.Pool,
        js: JetStreamContext,
        stream: str,
        stop: asyncio.Event,
        *,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        config = api.ConsumerConfig(
            durable_name=self.name,
            name=self.name,
            filter_subjects=self.subjects,
            ack_policy=api.AckPolicy.EXPLICIT,
            deliver_policy=api.DeliverPolicy.ALL,
            ack_wait=self._ack_wait,
            max_ack_pending=1000,
        )
        # Replicas starting together add the same consumer: the same
        # configuration twice is one consumer. In a cluster, wait out an election.
        added = await _unless_stopped(
            jetstream.while_electing(
                f"create the consumer {self.name}",
                lambda: js.add_consumer(stream, config=config),
                within=float("inf"),
            ),
            stop,
        )
        if added is None:
            return
        subscription = await js.pull_subscribe_bind(durable=self.name, stream=stream)
        try:
            while not stop.is_set():
                try:
                    messages = await _unless_stopped(
                        subscription.fetch(self._batch_size, timeout=FETCH_WAIT_SECONDS), stop
                    )
                    if messages is None:
                        return  # stopping: what the broker sent meanwhile is redelivered
                except (nats.errors.TimeoutError, TimeoutError):
                    continue  # nothing to do right now
                except nats.errors.ConnectionClosedError:
                    return
                except Exception:  # the broker away or restarting: keep the consumer alive
                    _log.warning(
                        "consumer could not fetch; retrying",
                        extra={"consumer": self.name},
                        exc_info=True,
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
                    continue
                if metrics is not None:
                    metrics.fetched(self.name, messages)
                started = time.monotonic()
                try:
                    await self._deliver_batch(pool, messages)
                except Exception:  # an ack or nak did not reach the broker
                    _log.warning(
                        "could not settle events; JetStream will deliver them again",
                        extra={"consumer": self.name},
                        exc_info=True,
                    )
                # A batch that was not full: let more gather before the next
                # fetch, rather than a transaction for every few events.
                rest = self._gather_seconds - (time.monotonic() - started)
                if len(messages) < self._batch_size and rest > 0:
                    await worker.wait_any(stop, seconds=rest)
        finally:
            await subscription.unsubscribe()

    async def _deliver_batch(self, pool: asyncpg.Pool, messages: Sequence[Msg]) -> None:
        """Apply a fetched batch in one transaction, then ack it. If a handler
        fails, the batch is rolled back and each event is delivered alone, so
        a poison event is retried and parked by itself without holding back
        the others. The database away: the whole batch comes again later."""
        readable: list[tuple[Msg, envelope_pb2.Envelope]] = []
        for msg in messages:
            envelope = _envelope(msg)
            if envelope is None:
                await self._deliver(pool, msg)  # parks it
            else:
                readable.append((msg, envelope))
        if not readable:
            return
        if len(readable) == 1 or not self._apply_together:
            for msg, _ in readable:
                await self._deliver(pool, msg)
            return
        try:
            async with (
                self._in_progress([m for m, _ in readable]),
                self._span(f"consume {self.name}", [e for _, e in readable]),
                pool.acquire() as conn,
                conn.transaction(),
            ):
                await self.apply_many(conn, [(e, m.subject) for m, e in readable])
        except INFRASTRUCTURE_ERRORS:
            _log.warning("consumer could not reach its database; will retry", exc_info=True)
            for msg, _ in readable:
                await msg.nak(delay=self._delay(msg.metadata.num_delivered or 1))
            return
        except Exception:  # a handler failed: find which, alone
            for msg, _ in readable:
                await self._deliver(pool, msg)
            return
        failpoints.hit("consumer.after_commit")
        for msg, _ in readable:
            await msg.ack()

    @contextlib.asynccontextmanager
    async def _in_progress(self, messages: Sequence[Msg]) -> AsyncIterator[None]:
        """While a long batch is applied, tell JetStream every third of the ack
        wait that its events are in progress, so it does not send them again."""

        async def keep_alive() -> None:
            while True:
                await asyncio.sleep(self._ack_wait / 3)
                for msg in messages:
                    with contextlib.suppress(Exception):
                        await msg.in_progress()

        task = asyncio.create_task(keep_alive())
        try:
            yield
        finally:
            task.cancel()

    @contextlib.asynccontextmanager
    async def _span(
        self, name: str, applied: Sequence[envelope_pb2.Envelope]
    ) -> AsyncIterator[None]:
        """A consumer span for one transaction: in the trace of the event it
        applies, or linked to each of the many it applies."""
        links = [] if len(applied) == 1 else _links(applied)
        parent = tracing.context_from(applied[0].traceparent) if len(applied) == 1 else None
        with _tracer.start_as_current_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            links=links,
            attributes={
                "messaging.system": "nats",
                "messaging.consumer.group.name": self.name,
                "messaging.batch.message_count": len(applied),
            },
        ):
            yield

    async def apply_many(
        self, conn: asyncpg.Connection, batch: Sequence[tuple[envelope_pb2.Envelope, str]]
    ) -> None:
        """`apply` for many events in the caller's transaction: one statement
        records them all in the inbox, and the handlers run for those not
        handled before, in order."""
        fresh = {
            row["event_id"]
            for row in await conn.fetch(
                "insert into inbox (consumer, event_id, handled_by) "
                "select $1, unnest($2::uuid[]), $3 on conflict do nothing returning event_id",
                self.name,
                [uuid.UUID(envelope.event_id) for envelope, _ in batch],
                self.handled_by,
            )
        }
        runs: list[list[tuple[envelope_pb2.Envelope, str]]] = []
        for envelope, subject in batch:
            event_id = uuid.UUID(envelope.event_id)
            if event_id not in fresh:
                continue
            fresh.discard(event_id)  # the same event twice in a batch runs once
            entry = self._handlers.get(envelope.type)
            batched = entry is not None and isinstance(entry[1], Batched)
            if batched and runs and runs[-1][0][0].type == envelope.type:
                runs[-1].append((envelope, subject))
            else:
                runs.append([(envelope, subject)])
        for run in runs:
            await self._handle_run(conn, run)

    async def _deliver(self, pool: asyncpg.Pool, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered or 1
        envelope = _envelope(msg)
        if envelope is None:  # not our envelope: retrying cannot help
            await self._park_raw(pool, msg, deliveries, "unreadable envelope")
            await msg.ack()
            return
        try:
            async with (
                self._span(f"consume {self.name}", [envelope]),
                pool.acquire() as conn,
                conn.transaction(),
            ):
                await self.apply(conn, envelope, msg.subject)
        except INFRASTRUCTURE_ERRORS + CONFLICT_ERRORS:
            _log.warning("consumer could not reach its database; will retry", exc_info=True)
            await msg.nak(delay=self._delay(deliveries))
            return
        except Exception as exc:
            if deliveries >= self.delivery.max_deliver:
                _log.error(
                    "event parked after its last delivery",
                    extra={"consumer": self.name, "event_id": envelope.event_id},
                    exc_info=True,
                )
                await self.park(pool, envelope, msg.subject, deliveries, repr(exc))
                await msg.ack()
            else:
                _log.warning(
                    "handler failed; will retry",
                    extra={"consumer": self.name, "event_id": envelope.event_id},
                    exc_info=True,
                )
                await msg.nak(delay=self._delay(deliveries))
            return
        failpoints.hit("consumer.after_commit")
        await msg.ack_sync()

    async def apply(
        self, conn: asyncpg.Connection, envelope: envelope_pb2.Envelope, subject: str
    ) -> bool:
        """Run the handler inside the caller's transaction, unless this event was
        handled before. Returns whether the handler ran."""
        first_time = await conn.fetchval(
            "insert into inbox (consumer, event_id, handled_by) values ($1, $2, $3) "
            "on conflict do nothing returning true",
            self.name,
            uuid.UUID(envelope.event_id),
            self.handled_by,
        )
        if not first_time:
            return False
        await self._handle(conn, envelope, subject)
        return True

    async def _handle(
        self, conn: asyncpg.Connection, envelope: envelope_pb2.Envelope, subject: str
    ) -> None:
        await self._handle_run(conn, [(envelope, subject)])

    async def _handle_run(
        self, conn: asyncpg.Connection, run: Sequence[tuple[envelope_pb2.Envelope, str]]
    ) -> None:
        """Run the handler of a run of events of one type (more than one only
        for a Batched handler), if this consumer has one for that type."""
        entry = self._handlers.get(run[0][0].type)
        if entry is None:
            return  # an event type this consumer does not act on
        message_class, handler = entry
        received = []
        for envelope, subject in run:
            message = message_class()
            if not envelope.payload.Unpack(message):
                raise ValueError(f"payload is not a {envelope.type}")
            received.append(events.Event(envelope=envelope, message=message, subject=subject))
        # The handling continues the trace of the (first) event it handles,
        # linked to the others of a run; the events it emits continue it too.
        first = run[0][0]
        parent: Context | None = tracing.context_from(first.traceparent)
        around = trace.get_current_span().get_span_context()
        if around.trace_id == trace.get_current_span(parent).get_span_context().trace_id:
            parent = None  # the delivery of this event alone: within its span
        with _tracer.start_as_current_span(
            f"process {run[0][1]}",
            context=parent,
            kind=SpanKind.CONSUMER,
            links=_links([envelope for envelope, _ in run[1:]]),
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": run[0][1],
                "messaging.message.id": first.event_id,
                "messaging.consumer.group.name": self.name,
                "messaging.batch.message_count": len(run),
            },
        ):
            if isinstance(handler, Batched):
                await handler.handle(conn, received)
            else:
                for event in received:
                    await handler(conn, event)

    async def park(
        self,
        pool: asyncpg.Pool,
        envelope: envelope_pb2.Envelope,
        subject: str,
        deliveries: int,
        error: str,
    ) -> None:
        await pool.execute(
            """
            insert into dead_letters
                (consumer, event_id, subject, event_type, envelope, deliveries, error)
            values ($1, $2, $3, $4, $5, $6, $7)
            on conflict (consumer, event_id) do update
                set deliveries = excluded.deliveries, error = excluded.error,
                    parked_at = now()
            """,
            self.name,
            uuid.UUID(envelope.event_id),
            subject,
            envelope.type,
            envelope.SerializeToString(),
            deliveries,
            error[:4000],
        )

    async def _park_raw(self, pool: asyncpg.Pool, msg: Msg, deliveries: int, error: str) -> None:
        await pool.execute(
            "insert into dead_letters "
            "(consumer, event_id, subject, event_type, envelope, deliveries, error) "
            "values ($1, $2, $3, '', $4, $5, $6) on conflict do nothing",
            self.name,
            uuid.uuid4(),
            msg.subject,
            msg.data,
            deliveries,
            error[:4000],
        )

    def _delay(self, deliveries: int) -> float:
        backoff = self.delivery.backoff_seconds
        return backoff[min(deliveries, len(backoff)) - 1]
