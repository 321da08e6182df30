"""The ideas service's wiring: its gRPC services (ideas, releases), migrations
and consumers."""

from __future__ import annotations

from pathlib import Path

import grpc
from cocreate.ideas.v1 import ideas_service_pb2

from services.ideas import api, handlers
from services.ideas.releases import RELEASE_SERVICE_NAMES, register_release_service
from services.kit.server import Runtime, ServiceDefinition


def _register(server: grpc.aio.Server, runtime: Runtime) -> None:
    api.register(server, runtime)
    register_release_service(server, runtime)


DEFINITION = ServiceDefinition(
    name="ideas",
    service_names=[
        ideas_service_pb2.DESCRIPTOR.services_by_name["IdeaService"].full_name,
        *RELEASE_SERVICE_NAMES,
    ],
    register=_register,
    migrations=Path(__file__).parent / "migrations",
    consumers=handlers.consumers,
)
