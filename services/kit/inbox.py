"""The inbox consumer: a durable JetStream pull consumer that applies each event once.

For every message: in one transaction, record the event id in `inbox` and run
the handler; commit; then ack. A redelivery (after a crash between commit and
ack, or a re-publish) finds the inbox row and changes nothing. A handler that
fails is retried with backoff (nak with delay); after `max_deliver` deliveries
the event is parked in `dead_letters` with its error, and acked so it no longer
blocks. Infrastructure failures (the database away) are retried without
counting towards parking.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import asyncpg
import nats.errors
from cocreate.events.v1 import envelope_pb2
from google.protobuf import message as pb_message
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from services.kit import events, failpoints, log, tracing
from services.kit.errors import CONFLICT_ERRORS, INFRASTRUCTURE_ERRORS

Handler = Callable[[asyncpg.Connection, events.Event[Any]], Awaitable[None]]


_log = log.get("inbox")

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


class InboxConsumer:
    def __init__(
        self,
        name: str,
        handlers: Mapping[type[pb_message.Message], Handler],
        *,
        subjects: Sequence[str] | None = None,
        max_deliver: int = 5,
        backoff_seconds: Sequence[float] = (0.2, 1.0, 3.0, 10.0, 30.0),
        batch_size: int = 50,
        ack_wait_seconds: float = 30.0,
    ) -> None:
        self.name = name
        self._handlers = {cls.DESCRIPTOR.full_name: (cls, h) for cls, h in handlers.items()}
        self.subjects = list(subjects or [events.subject_for(cls) for cls in handlers])
        self._max_deliver = max_deliver
        self._backoff = list(backoff_seconds)
        self._batch_size = batch_size
        self._ack_wait = ack_wait_seconds

    async def run(
        self, pool: asyncpg.Pool, js: JetStreamContext, stream: str, stop: asyncio.Event
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
        await js.add_consumer(stream, config=config)
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
                for msg in messages:
                    try:
                        await self._deliver(pool, msg)
                    except Exception:  # the ack or nak did not reach the broker
                        _log.warning(
                            "could not settle an event; JetStream will deliver it again",
                            extra={"consumer": self.name},
                            exc_info=True,
                        )
        finally:
            await subscription.unsubscribe()

    async def _deliver(self, pool: asyncpg.Pool, msg: Msg) -> None:
        deliveries = msg.metadata.num_delivered or 1
        envelope = envelope_pb2.Envelope()
        try:
            envelope.ParseFromString(msg.data)
            uuid.UUID(envelope.event_id)
        except Exception as exc:  # not our envelope: retrying cannot help
            await self._park_raw(pool, msg, deliveries, f"unreadable envelope: {exc}")
            await msg.ack()
            return
        try:
            async with pool.acquire() as conn, conn.transaction():
                await self.apply(conn, envelope, msg.subject)
        except INFRASTRUCTURE_ERRORS + CONFLICT_ERRORS:
            _log.warning("consumer could not reach its database; will retry", exc_info=True)
            await msg.nak(delay=self._delay(deliveries))
            return
        except Exception as exc:
            if deliveries >= self._max_deliver:
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
            "insert into inbox (consumer, event_id) values ($1, $2) "
            "on conflict do nothing returning true",
            self.name,
            uuid.UUID(envelope.event_id),
        )
        if not first_time:
            return False
        entry = self._handlers.get(envelope.type)
        if entry is None:
            return False  # an event type this consumer does not act on
        message_class, handler = entry
        message = message_class()
        if not envelope.payload.Unpack(message):
            raise ValueError(f"payload is not a {envelope.type}")
        # Events the handler emits continue the trace of the event it handles.
        trace = tracing.set_current(tracing.continue_from(envelope.traceparent))
        try:
            await handler(conn, events.Event(envelope=envelope, message=message, subject=subject))
        finally:
            tracing.reset(trace)
        return True

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
        return self._backoff[min(deliveries, len(self._backoff)) - 1]
