"""The ideas service's wiring: its gRPC service, migrations and consumers."""

from __future__ import annotations

from pathlib import Path

from cocreate.ideas.v1 import ideas_service_pb2

from services.ideas import api, handlers
from services.kit.server import ServiceDefinition

DEFINITION = ServiceDefinition(
    name="ideas",
    service_names=[ideas_service_pb2.DESCRIPTOR.services_by_name["IdeaService"].full_name],
    register=api.register,
    migrations=Path(__file__).parent / "migrations",
    consumers=handlers.consumers,
)
