"""What the release tests share: the ideas service (with its release service),
the votes service (with its notification service), and small steps of a week."""

from __future__ import annotations

import dataclasses

from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.ideas.v1 import release_service_pb2 as rel_pb
from cocreate.ideas.v1 import release_service_pb2_grpc as rel_grpc
from cocreate.votes.v1 import notification_service_pb2_grpc as notes_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from services.kit.server import RunningService
from tests import support
from tests.support import Platform, metadata, stub

PM = metadata("pm-1", "pm")
ADMIN = metadata("admin-1", "admin")
RELEASE_TOOL = metadata("release-bot", "service")


@dataclasses.dataclass
class IdeasClients:
    service: RunningService
    ideas: ideas_grpc.IdeaServiceStub
    releases: rel_grpc.ReleaseServiceStub


async def start_ideas(platform: Platform) -> IdeasClients:
    service = await platform.start("ideas")
    return IdeasClients(
        service=service,
        ideas=stub(service, ideas_grpc.IdeaServiceStub),
        releases=stub(service, rel_grpc.ReleaseServiceStub),
    )


@dataclasses.dataclass
class VotesClients:
    service: RunningService
    votes: votes_grpc.VoteServiceStub
    notifications: notes_grpc.NotificationServiceStub


async def start_votes(platform: Platform, env: dict[str, str] | None = None) -> VotesClients:
    service = await platform.start("votes", env=env)
    return VotesClients(
        service=service,
        votes=stub(service, votes_grpc.VoteServiceStub),
        notifications=stub(service, notes_grpc.NotificationServiceStub),
    )


async def new_product(clients: IdeasClients, name: str = "Phone OS") -> str:
    return await support.new_product(clients.ideas, name)


async def submit(clients: IdeasClients, product_id: str, author: str, title: str) -> str:
    return (await support.submit_idea(clients.ideas, product_id, author, title)).id


async def new_iteration(clients: IdeasClients, product_id: str, name: str) -> rel_pb.Iteration:
    answer = await clients.releases.CreateIteration(
        rel_pb.CreateIterationRequest(product_id=product_id, name=name), metadata=PM
    )
    iteration: rel_pb.Iteration = answer.iteration
    return iteration


async def plan(clients: IdeasClients, iteration_id: str, idea_id: str) -> rel_pb.IterationIdea:
    answer = await clients.releases.PlanIdea(
        rel_pb.PlanIdeaRequest(iteration_id=iteration_id, idea_id=idea_id), metadata=PM
    )
    planned: rel_pb.IterationIdea = answer.idea
    return planned


async def mark_done(clients: IdeasClients, iteration_id: str, idea_id: str) -> None:
    await clients.releases.MarkIdeaDone(
        rel_pb.MarkIdeaDoneRequest(iteration_id=iteration_id, idea_id=idea_id), metadata=PM
    )


async def cut(
    clients: IdeasClients, iteration_id: str, version: str, request_id: str = ""
) -> rel_pb.Release:
    answer = await clients.releases.CutRelease(
        rel_pb.CutReleaseRequest(iteration_id=iteration_id, version=version, request_id=request_id),
        metadata=RELEASE_TOOL,
    )
    release: rel_pb.Release = answer.release
    return release


async def iteration_ideas(clients: IdeasClients, iteration_id: str) -> list[rel_pb.IterationIdea]:
    answer = await clients.releases.ListIterationIdeas(
        rel_pb.ListIterationIdeasRequest(iteration_id=iteration_id, page_size=500), metadata=PM
    )
    return list(answer.ideas)


async def cast(votes: votes_grpc.VoteServiceStub, idea_id: str, member: str) -> votes_pb.Vote:
    return await support.cast_when_known(votes, idea_id, member)
