"""Mutations with a client-chosen request_id: a retry gets the first answer.

Inside the mutation's transaction: `cached = await replay(...)`; if it is not
None, answer it; otherwise do the work and `remember(...)` the response. The
advisory lock makes two concurrent retries of one request take turns, so the
second sees the first's committed answer.
"""

from __future__ import annotations

from typing import TypeVar

import asyncpg
from google.protobuf import message as pb_message

from services.kit.errors import FieldViolation, InvalidArgument

R = TypeVar("R", bound=pb_message.Message)

MAX_REQUEST_ID_LENGTH = 128


def check_request_id(request_id: str) -> None:
    if len(request_id) > MAX_REQUEST_ID_LENGTH or not request_id.isprintable():
        raise InvalidArgument(
            [
                FieldViolation(
                    "request_id", f"must be printable, at most {MAX_REQUEST_ID_LENGTH} characters"
                )
            ]
        )


async def replay(
    conn: asyncpg.Connection, caller: str, method: str, request_id: str, response_type: type[R]
) -> R | None:
    if not request_id:
        return None
    check_request_id(request_id)
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended($1, 0))",
        f"{caller}\x1f{method}\x1f{request_id}",
    )
    stored = await conn.fetchval(
        "select response from idempotent_requests "
        "where caller = $1 and method = $2 and request_id = $3",
        caller,
        method,
        request_id,
    )
    if stored is None:
        return None
    response = response_type()
    response.ParseFromString(stored)
    return response


async def remember(
    conn: asyncpg.Connection,
    caller: str,
    method: str,
    request_id: str,
    response: pb_message.Message,
) -> None:
    if not request_id:
        return
    await conn.execute(
        "insert into idempotent_requests (caller, method, request_id, response) "
        "values ($1, $2, $3, $4)",
        caller,
        method,
        request_id,
        response.SerializeToString(deterministic=True),
    )
