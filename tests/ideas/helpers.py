"""What the ideas tests share: a started ideas service with stubs per role,
products and ideas made through the API, tallies fed through the event stream,
and the events the service wrote."""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

from cocreate.events.v1 import envelope_pb2, votes_events_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as pb_grpc
from google.protobuf import message as pb_message

from services.kit.server import RunningService
from tests.support import Platform, metadata, stub

ADMIN = metadata("admin-1", "admin")
PM = metadata("pm-1", "pm")
ALICE = metadata("alice")
BOB = metadata("bob")
SERVICE = metadata("release-bot", "service")

_names = itertools.count(1)


@dataclass
class Ideas:
    service: RunningService
    api: pb_grpc.IdeaServiceStub

    async def product(self, name: str | None = None) -> pb.Product:
        answer: pb.CreateProductResponse = await self.api.CreateProduct(
            pb.CreateProductRequest(name=name or f"Product {next(_names)}"), metadata=ADMIN
        )
        return answer.product

    async def submit(
        self,
        product_id: str,
        title: str = "A better battery saver",
        *,
        body: str = "",
        tags: list[str] | None = None,
        who: Any = ALICE,
    ) -> pb.Idea:
        answer: pb.SubmitIdeaResponse = await self.api.SubmitIdea(
            pb.SubmitIdeaRequest(product_id=product_id, title=title, body=body, tags=tags or []),
            metadata=who,
        )
        return answer.idea

    async def status(self, idea_id: str, status: int, note: str = "") -> pb.Idea:
        request = pb.ChangeIdeaStatusRequest(idea_id=idea_id, note=note)
        request.status = status  # type: ignore[assignment]
        answer: pb.ChangeIdeaStatusResponse = await self.api.ChangeIdeaStatus(request, metadata=PM)
        return answer.idea

    async def get(self, idea_id: str, who: Any = PM) -> pb.Idea:
        answer: pb.GetIdeaResponse = await self.api.GetIdea(
            pb.GetIdeaRequest(idea_id=idea_id), metadata=who
        )
        return answer.idea

    async def list_all(self, request: pb.ListIdeasRequest, who: Any = ALICE) -> list[pb.Idea]:
        """Every page of a list."""
        found: list[pb.Idea] = []
        while True:
            page = await self.api.ListIdeas(request, metadata=who)
            found += page.ideas
            if not page.next_page_token:
                return found
            request.page_token = page.next_page_token

    async def feed_tally(
        self,
        idea_id: str,
        version: int,
        score: int,
        voters: int = 1,
        by_tier: dict[str, int] | None = None,
        trending: float = 0.0,
        one_per_event: bool = False,
    ) -> None:
        """Publish a votes TalliesChanged with this one tally through the
        service's own outbox, so it travels the real relay → JetStream → inbox
        path. `one_per_event`: a lone TallyChanged, as earlier versions of the
        votes service sent."""
        tally = votes_events_pb2.TallyChanged(
            idea_id=idea_id,
            version=version,
            weighted_score=score,
            voter_count=voters,
            voters_by_tier=by_tier or {},
            trending_score=trending,
        )
        async with self.service.runtime.pool.acquire() as conn, conn.transaction():
            if one_per_event:
                await self.service.runtime.outbox.emit(
                    conn, tally, aggregate_id=idea_id, aggregate_version=version
                )
            else:
                await self.service.runtime.outbox.emit(
                    conn, votes_events_pb2.TalliesChanged(tallies=[tally]), aggregate_id="tallies"
                )

    async def handled_tallies(self) -> int:
        async with self.service.runtime.pool.acquire() as conn:
            count: int = await conn.fetchval(
                "select count(*) from inbox where consumer = 'ideas-tallies'"
            )
            return count

    async def events(self, kind: type[pb_message.Message]) -> list[Any]:
        """The payloads of the events of one type the service wrote, in order."""
        async with self.service.runtime.pool.acquire() as conn:
            rows = await conn.fetch("select envelope from outbox order by id")
        found = []
        for row in rows:
            envelope = envelope_pb2.Envelope()
            envelope.ParseFromString(row["envelope"])
            if envelope.type == kind.DESCRIPTOR.full_name:
                message = kind()
                envelope.payload.Unpack(message)
                found.append((envelope, message))
        return found


async def start_ideas(platform: Platform, env: dict[str, str] | None = None) -> Ideas:
    service = await platform.start("ideas", env)
    return Ideas(service, stub(service, pb_grpc.IdeaServiceStub))


def unknown_id() -> str:
    return str(uuid.uuid4())
