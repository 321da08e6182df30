"""Helpers the tests share: starting services against the session's real
Postgres and NATS, tokens, rich error details, waiting for a condition,
other services' events as their producers write them, and the calls most
tests start with (a product, an idea, a vote)."""

from __future__ import annotations

import asyncio
import importlib
import itertools
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import Any, TypeVar

import grpc
from cocreate.events.v1 import ideas_events_pb2
from cocreate.ideas.v1 import idea_status_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc
from google.protobuf import message as pb_message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from deploy.localstack import LocalNats, LocalPostgres
from services.kit import auth, config
from services.kit.outbox import Outbox
from services.kit.server import RunningService, ServiceDefinition, start

T = TypeVar("T")
M = TypeVar("M", bound=pb_message.Message)

_database_numbers = itertools.count(1)


def metadata(member_id: str, role: str = "member") -> tuple[tuple[str, str], ...]:
    """gRPC call metadata with a valid development token."""
    token = auth.mint_token(member_id, role, config.DEV_JWT_SECRET)
    return (("authorization", f"Bearer {token}"),)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, interval: float = 0.05
) -> T:
    """Poll `probe` until it returns something truthy; fail after `within` seconds
    with the last value it returned."""
    deadline = time.monotonic() + within
    while True:
        last = await probe()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within}s; last value: {last!r}")
        await asyncio.sleep(interval)


def rich_status(error: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status a service sent with an error."""
    status: status_pb2.Status | None = rpc_status.from_call(error)
    if status is None:
        raise AssertionError(f"no rich status in the error {error.code()}: {error.details()}")
    return status


def detail(error: grpc.aio.AioRpcError, kind: type[M]) -> M:
    """The first detail of type `kind` in the error."""
    for packed in rich_status(error).details:
        found = kind()
        if packed.Unpack(found):
            return found
    raise AssertionError(f"no {kind.DESCRIPTOR.full_name} in the error details")


def violated_fields(error: grpc.aio.AioRpcError) -> set[str]:
    return {v.field for v in detail(error, error_details_pb2.BadRequest).field_violations}


def error_reason(error: grpc.aio.AioRpcError) -> str:
    return str(detail(error, error_details_pb2.ErrorInfo).reason)


class Platform:
    """Starts services in this test's event loop against fresh databases on the
    session's Postgres and the session's NATS (whose stream is clean per test)."""

    def __init__(self, postgres: LocalPostgres, nats_server: LocalNats) -> None:
        self.postgres = postgres
        self.nats = nats_server
        self.database_urls: dict[str, str] = {}
        self.running: list[RunningService] = []

    def database_url(self, service: str) -> str:
        if service not in self.database_urls:
            name = f"test{next(_database_numbers)}_{service}"
            self.database_urls[service] = self.postgres.create_database(name)
        return self.database_urls[service]

    def config(self, service: str, env: dict[str, str] | None = None) -> config.Config:
        prefix = f"COCREATE_{service.upper()}_"
        settings = {
            prefix + "DATABASE_URL": self.database_url(service),
            prefix + "ADDR": "127.0.0.1:0",
            prefix + "METRICS_ADDR": "127.0.0.1:0",
            "COCREATE_NATS_URL": self.nats.url,
            "COCREATE_ENV": "development",
            "COCREATE_RELAY_POLL_SECONDS": "0.2",
            "COCREATE_SHUTDOWN_GRACE_SECONDS": "1",
            **(env or {}),
        }
        return config.load(service, settings)

    async def start(
        self,
        service: str,
        env: dict[str, str] | None = None,
        definition: ServiceDefinition | None = None,
    ) -> RunningService:
        """Start `service` (its services/<name>/service.py DEFINITION) and
        stop it when the test ends."""
        if definition is None:
            definition = importlib.import_module(f"services.{service}.service").DEFINITION
        assert definition is not None
        running = await start(definition, self.config(service, env))
        self.running.append(running)
        return running

    def channel(self, running: RunningService) -> grpc.aio.Channel:
        return grpc.aio.insecure_channel(running.address)

    async def stop_all(self) -> None:
        for running in reversed(self.running):
            await running.stop(grace=1)
        self.running.clear()


def stub(running: RunningService, stub_class: Callable[[grpc.aio.Channel], T]) -> T:
    """A client stub on a new channel to `running` (closed with the test's loop)."""
    return stub_class(grpc.aio.insecure_channel(running.address))


# Other services' events, as their producers write them: through an outbox
# (named after the producer) in the service's own database, which the
# service's relay publishes on the same NATS.


async def emit(
    service: RunningService,
    message: pb_message.Message,
    *,
    source: str,
    aggregate_id: str,
    aggregate_version: int = 0,
) -> str:
    """One event; its id."""
    [event_id] = await emit_all(service, source, [(message, aggregate_id, aggregate_version)])
    return event_id


async def emit_all(
    service: RunningService, source: str, events: Sequence[tuple[pb_message.Message, str, int]]
) -> list[str]:
    """(event, aggregate_id, aggregate_version) each, in one transaction."""
    outbox = Outbox(source)
    async with service.runtime.pool.acquire() as conn, conn.transaction():
        return [
            await outbox.emit(conn, message, aggregate_id=aggregate_id, aggregate_version=version)
            for message, aggregate_id, version in events
        ]


def idea_submitted(idea_id: str, author_id: str = "author") -> tuple[pb_message.Message, str, int]:
    """The ideas service's event of a new idea (titled by its id), for emit_all."""
    return (
        ideas_events_pb2.IdeaSubmitted(idea_id=idea_id, author_id=author_id, title=idea_id),
        idea_id,
        1,
    )


def idea_status_changed(
    idea_id: str,
    status: idea_status_pb2.IdeaStatus.ValueType,
    version: int,
    author_id: str = "author",
) -> tuple[pb_message.Message, str, int]:
    """The ideas service's event of a status change by a PM, for emit_all."""
    event = ideas_events_pb2.IdeaStatusChanged(
        idea_id=idea_id, author_id=author_id, new_status=status, actor_id="pm-1"
    )
    return event, idea_id, version


# The calls most tests start with.


async def new_product(ideas: ideas_grpc.IdeaServiceStub, name: str = "Phone OS") -> str:
    answer = await ideas.CreateProduct(
        ideas_pb.CreateProductRequest(name=name), metadata=metadata("admin-1", "admin")
    )
    return str(answer.product.id)


async def submit_idea(
    ideas: ideas_grpc.IdeaServiceStub, product_id: str, author: str, title: str, **fields: Any
) -> ideas_pb.Idea:
    fields.setdefault("body", "why it matters")
    answer = await ideas.SubmitIdea(
        ideas_pb.SubmitIdeaRequest(product_id=product_id, title=title, **fields),
        metadata=metadata(author),
    )
    idea: ideas_pb.Idea = answer.idea
    return idea


async def cast_when_known(
    votes: votes_grpc.VoteServiceStub,
    idea_id: str,
    member: str,
    *,
    retry: Collection[grpc.StatusCode] = (grpc.StatusCode.NOT_FOUND,),
    within: float = 20.0,
) -> votes_pb.Vote:
    """Cast as soon as the votes service has learnt of the idea from its event
    (NOT_FOUND until then); a code in `retry` is tried again, OK means committed."""

    async def attempt() -> votes_pb.Vote | None:
        try:
            answer = await votes.CastVote(
                votes_pb.CastVoteRequest(idea_id=idea_id), metadata=metadata(member)
            )
        except grpc.aio.AioRpcError as error:
            if error.code() in retry:
                return None
            raise
        vote: votes_pb.Vote = answer.vote
        return vote

    return await eventually(attempt, within=within)
