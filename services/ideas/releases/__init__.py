"""Weekly iterations, the release cut and release notes: the ideas service's
cocreate.ideas.v1.ReleaseService.

Wired into the ideas service next to its IdeaService (services/ideas/service.py
adds RELEASE_SERVICE_NAMES to its service names and calls
register_release_service from its register function). It shares the ideas
database and reuses the ideas servicer's status change, so a cut ships ideas
with the same history and IdeaStatusChanged events as ChangeIdeaStatus.

Decisions:
- Planning an OPEN or UNDER_REVIEW idea moves it to PLANNED along the
  workflow (OPEN passes through UNDER_REVIEW, each step in the history and
  announced); unplanning leaves the status as it is.
- A cut ships every planned idea marked done that is PLANNED or IN_PROGRESS
  (as the SERVICE role, which may go PLANNED → SHIPPED), keeps in the release
  an idea a PM already shipped by hand, drops declined or merged ones, and
  rolls every other one over to the next ISO-week iteration (created when
  missing). The shipped ideas' title, author and tally are kept as they were
  at the cut, so the notes never change.
"""

from __future__ import annotations

import grpc
from cocreate.ideas.v1 import release_service_pb2

from services.ideas.releases import api
from services.kit.server import Runtime

RELEASE_SERVICE_NAMES = [
    release_service_pb2.DESCRIPTOR.services_by_name["ReleaseService"].full_name
]


def register_release_service(server: grpc.aio.Server, runtime: Runtime) -> None:
    api.register(server, runtime)


__all__ = ["RELEASE_SERVICE_NAMES", "register_release_service"]
