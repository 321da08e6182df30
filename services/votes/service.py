"""The votes service's wiring: its gRPC servicers (votes, notifications),
migrations, the consumers of the ideas and rewards events, and the background
loops (the tally folder, the live notification fan-out)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import grpc
from cocreate.votes.v1 import votes_service_pb2, votes_service_pb2_grpc

from services.kit.inbox import InboxConsumer
from services.kit.server import BackgroundLoop, Runtime, ServiceDefinition
from services.votes import handlers
from services.votes.api import VoteServicer
from services.votes.notifications import (
    NOTIFICATION_SERVICE_NAMES,
    notification_consumers,
    register_notification_service,
)
from services.votes.tallies import TallyFolder, watch_lag

FOLD_POLL_SETTING = "COCREATE_VOTES_FOLD_POLL_SECONDS"
FOLD_GATHER_SETTING = "COCREATE_VOTES_FOLD_GATHER_SECONDS"


def _register(server: grpc.aio.Server, runtime: Runtime) -> Sequence[BackgroundLoop]:
    votes_service_pb2_grpc.add_VoteServiceServicer_to_server(VoteServicer(runtime), server)
    return register_notification_service(server, runtime)


def _consumers(runtime: Runtime) -> Sequence[InboxConsumer]:
    return [*handlers.consumers(runtime.outbox), *notification_consumers(runtime)]


def _background(runtime: Runtime) -> Sequence[BackgroundLoop]:
    folder = TallyFolder(
        runtime.pool,
        runtime.outbox,
        runtime.config.database_url,
        instance=runtime.config.instance,
        poll_seconds=runtime.config.get_float(FOLD_POLL_SETTING, 0.5),
        gather_seconds=runtime.config.get_float(FOLD_GATHER_SETTING, 0.1),
    )
    watch_lag(runtime.metrics, runtime.pool)
    return [folder.run]


DEFINITION = ServiceDefinition(
    name="votes",
    service_names=[
        votes_service_pb2.DESCRIPTOR.services_by_name["VoteService"].full_name,
        *NOTIFICATION_SERVICE_NAMES,
    ],
    register=_register,
    migrations=Path(__file__).parent / "migrations",
    consumers=_consumers,
    background=_background,
)
