"""Mutations with a client-chosen request_id: a retry gets the first answer.

A servicer holds `Mutations(pool, its service descriptors)`; a handler ends
in `return await self._mutations.run(caller.member_id, request, work)`, which
runs `work(conn)` in one transaction and remembers its response with the
request_id; a retry of the same request answers the remembered response and
does nothing. The RPC, its response type and the key answers are remembered
under (`"IdeaService.SubmitIdea"`) come from the request's type, so no
handler spells them. (Lower level, inside a transaction of your own:
`replay(...)`, then the work, then `remember(...)`.) The advisory lock makes
two concurrent retries of one request take turns, so the second sees the
first's committed answer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import asyncpg
from google.protobuf import descriptor, message_factory
from google.protobuf import message as pb_message

from services.kit import db
from services.kit.errors import Violations

R = TypeVar("R", bound=pb_message.Message)

# A mutation's work: what it does in the transaction, and its answer.
Work = Callable[[asyncpg.Connection], Awaitable[R]]

MAX_REQUEST_ID_LENGTH = 128


def check_request_id(request_id: str, violations: Violations | None = None) -> None:
    """A request_id is printable and at most MAX_REQUEST_ID_LENGTH long. With
    `violations`, a bad one is added to them; without, it is raised at once."""
    collected = Violations() if violations is None else violations
    collected.check(
        len(request_id) <= MAX_REQUEST_ID_LENGTH and request_id.isprintable(),
        "request_id",
        f"must be printable, at most {MAX_REQUEST_ID_LENGTH} characters",
    )
    if violations is None:
        collected.raise_if_any()


def request_key(caller: str, method: str, request_id: str) -> str:
    """The advisory lock key that makes retries of one request take turns."""
    return f"{caller}\x1f{method}\x1f{request_id}"


async def replay(
    conn: asyncpg.Connection, caller: str, method: str, request_id: str, response_type: type[R]
) -> R | None:
    if not request_id:
        return None
    check_request_id(request_id)
    await conn.execute(
        "select pg_advisory_xact_lock(hashtextextended($1, 0))",
        request_key(caller, method, request_id),
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
    await remember_many(conn, [(caller, method, request_id, response)])


async def remember_many(
    conn: asyncpg.Connection, answers: Sequence[tuple[str, str, str, pb_message.Message]]
) -> None:
    """`remember` for many (caller, method, request_id, response) in one statement;
    the caller holds each request's lock (see `request_key`)."""
    await db.write_all(conn, [remembered_rows(answers)])


def remembered_rows(answers: Sequence[tuple[str, str, str, pb_message.Message]]) -> db.Rows:
    """The rows `remember_many` adds, for `db.write_all` beside the rest of a write."""
    return db.Rows(
        "idempotent_requests",
        (("caller", "text"), ("method", "text"), ("request_id", "text"), ("response", "bytea")),
        (
            [a[0] for a in answers],
            [a[1] for a in answers],
            [a[2] for a in answers],
            [a[3].SerializeToString(deterministic=True) for a in answers],
        ),
    )


def method_key(service: descriptor.ServiceDescriptor, method: descriptor.MethodDescriptor) -> str:
    """The name answers of a method are remembered under: `Service.Method`."""
    return f"{service.name}.{method.name}"


class Mutations:
    """The mutations of one or more gRPC services (every method whose request
    has a `request_id`), each found by its request's type."""

    def __init__(self, pool: asyncpg.Pool, *services: descriptor.ServiceDescriptor) -> None:
        self._pool = pool
        self._by_request: dict[str, tuple[str, type[pb_message.Message]]] = {}
        for service in services:
            for method in service.methods:
                if "request_id" not in method.input_type.fields_by_name:
                    continue
                name = method.input_type.full_name
                if name in self._by_request:
                    raise ValueError(f"{name} is the request of more than one mutation")
                response = message_factory.GetMessageClass(method.output_type)
                self._by_request[name] = (method_key(service, method), response)

    def key_of(self, request: pb_message.Message) -> str:
        return self._by_request[request.DESCRIPTOR.full_name][0]

    async def run(
        self,
        caller: str,
        request: Any,
        work: Work[R],
    ) -> R:
        """`work(conn)` in a transaction, once per (caller, RPC, request_id);
        run again when Postgres rolls it back for a conflict (db.in_transaction),
        so `work` must change nothing outside its connection."""
        method, response_type = self._by_request[request.DESCRIPTOR.full_name]

        async def once(conn: asyncpg.Connection) -> R:
            cached = await replay(conn, caller, method, request.request_id, response_type)
            if cached is not None:
                return cached  # type: ignore[return-value]  # the type work returns
            response = await work(conn)
            await remember(conn, caller, method, request.request_id, response)
            return response

        return await db.in_transaction(self._pool, once)
