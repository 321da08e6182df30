"""The DeadLetterService every service serves: list parked events, replay one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import asyncpg
import grpc
from cocreate.events.v1 import envelope_pb2
from cocreate.ops.v1 import dead_letter_service_pb2 as pb
from cocreate.ops.v1 import dead_letter_service_pb2_grpc as pb_grpc

from services.kit import auth
from services.kit.errors import (
    DomainError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.kit.inbox import InboxConsumer

if TYPE_CHECKING:
    from services.kit.server import Runtime


def _to_proto(row: asyncpg.Record) -> pb.DeadLetter:
    letter = pb.DeadLetter(
        id=row["id"],
        consumer=row["consumer"],
        event_id=str(row["event_id"]),
        event_type=row["event_type"],
        subject=row["subject"],
        deliveries=row["deliveries"],
        error=row["error"],
    )
    letter.park_time.FromDatetime(row["parked_at"])
    return letter


class DeadLetterServicer(pb_grpc.DeadLetterServiceServicer):
    def __init__(self, runtime: Runtime, consumers: Sequence[InboxConsumer]) -> None:
        self._rt = runtime
        self._consumers = {c.name: c for c in consumers}

    async def ListDeadLetters(
        self, request: pb.ListDeadLettersRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListDeadLettersResponse:
        auth.require_role(auth.Role.ADMIN)
        page = self._rt.page_tokens.page(request)
        after = int(page.after["id"]) if page.after else 0
        rows = await self._rt.pool.fetch(
            "select * from dead_letters where id > $1 order by id limit $2", after, page.fetch
        )
        return pb.ListDeadLettersResponse(
            dead_letters=[_to_proto(r) for r in page.items(rows)],
            next_page_token=page.next_token(rows, lambda r: {"id": r["id"]}),
        )

    async def ReplayDeadLetter(
        self, request: pb.ReplayDeadLetterRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReplayDeadLetterResponse:
        auth.require_role(auth.Role.ADMIN)
        if request.id <= 0:
            raise InvalidArgument([FieldViolation("id", "must be a positive dead letter id")])
        async with self._rt.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "select * from dead_letters where id = $1 for update", request.id
            )
            if row is None:
                raise NotFound("dead letter", str(request.id))
            consumer = self._consumers.get(row["consumer"])
            if consumer is None:
                raise FailedPrecondition(
                    f"no consumer named {row['consumer']!r} runs in this service",
                    reason="UNKNOWN_CONSUMER",
                )
            envelope = envelope_pb2.Envelope()
            envelope.ParseFromString(row["envelope"])
            try:
                await consumer.apply(conn, envelope, row["subject"])
            except DomainError:
                raise
            except Exception as exc:
                # Rolls back: the dead letter stays for a later replay.
                raise FailedPrecondition(
                    f"the handler failed again: {exc!r}", reason="REPLAY_FAILED"
                ) from exc
            await conn.execute("delete from dead_letters where id = $1", request.id)
        return pb.ReplayDeadLetterResponse(dead_letter=_to_proto(row))
