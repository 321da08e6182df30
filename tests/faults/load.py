"""The mixed load of a crash schedule, and the schedule of kills.

Six clients submit, cast and retract for 240 members, comment, grant and
revoke tiers, grant points and redeem them, move ideas along the workflow up
to shipped and merge them; a release manager plans, marks done and cuts a
release every few seconds.

Clients behave like real ones: every mutation carries a request_id and is
retried with the same one on UNAVAILABLE, DEADLINE_EXCEEDED and ABORTED (the
server or a backend away, or a conflict). A vote on an idea the votes service
has not heard of yet answers NOT_FOUND, so votes retry that too for a while.
Every answer is recorded: what was answered OK is what the checker expects
to find stored, and no answer may be INTERNAL or UNKNOWN.

A member belongs to one client, so a member's calls are made one after the
other and the last OK answer about a vote is its expected state. Everything
decided — which call, which member and idea, when to kill what and for how
long — comes from random generators seeded from the seed, so a seed replays
the same schedule (the timing of real processes varies around it).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.ideas.v1 import release_service_pb2 as release_pb
from cocreate.ideas.v1 import release_service_pb2_grpc as release_grpc
from cocreate.rewards.v1 import rewards_service_pb2 as rewards_pb
from cocreate.rewards.v1 import rewards_service_pb2_grpc as rewards_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from services.kit import channels
from tests.faults.harness import SERVICES, CrashStack
from tests.support import metadata

RETRIED = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
}
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
ADMIN = metadata("admin-1", "admin")
PM = metadata("pm-1", "pm")
# The next step of the status workflow, up to shipped.
NEXT_STATUS = {
    status.IDEA_STATUS_OPEN: status.IDEA_STATUS_UNDER_REVIEW,
    status.IDEA_STATUS_UNDER_REVIEW: status.IDEA_STATUS_PLANNED,
    status.IDEA_STATUS_PLANNED: status.IDEA_STATUS_IN_PROGRESS,
    status.IDEA_STATUS_IN_PROGRESS: status.IDEA_STATUS_SHIPPED,
}
TIERS = ("member", "core", "honorary")
ITEM_STOCK = 40
ITEM_PRICE = 5


@dataclass
class Record:
    """What the clients were answered."""

    ideas: dict[str, str] = field(default_factory=dict)  # idea id → author
    # (member, idea) → the last OK vote change: True cast, False retract.
    votes: dict[tuple[str, str], bool] = field(default_factory=dict)
    statuses: list[tuple[str, int]] = field(default_factory=list)  # OK status changes
    merges: list[tuple[str, str]] = field(default_factory=list)  # (source, target) OK
    comments: list[str] = field(default_factory=list)  # comment ids answered OK
    granted: dict[str, str] = field(default_factory=dict)  # member → tier ('' revoked)
    points: list[str] = field(default_factory=list)  # ledger entries of grants answered OK
    redemptions: list[str] = field(default_factory=list)  # redemption ids answered OK
    # Releases answered OK: release id → the ideas it shipped.
    releases: dict[str, list[str]] = field(default_factory=dict)
    item_id: str = ""
    item_stock: int = 0  # the catalogue item's stock before the load
    forbidden: list[str] = field(default_factory=list)  # INTERNAL/UNKNOWN answers
    calls: int = 0
    ok: int = 0
    gave_up: int = 0
    kills: list[str] = field(default_factory=list)


class Clients:
    def __init__(self, stack: CrashStack, record: Record) -> None:
        # A service's address may list its replicas: the calls spread over them.
        ideas_channel = channels.aio_channel(stack.addresses["ideas"])
        self.ideas = ideas_grpc.IdeaServiceStub(ideas_channel)
        self.releases = release_grpc.ReleaseServiceStub(ideas_channel)
        self.votes = votes_grpc.VoteServiceStub(channels.aio_channel(stack.addresses["votes"]))
        self.rewards = rewards_grpc.RewardsServiceStub(
            channels.aio_channel(stack.addresses["rewards"])
        )
        self.record = record

    async def call(
        self,
        method: Callable[..., Awaitable[Any]],
        request: Any,
        meta: Any,
        *,
        retry_not_found: bool = False,
        within: float = 90.0,
    ) -> Any | grpc.StatusCode:
        """The answer, or the final error code; retries as a real client does."""
        deadline = time.monotonic() + within
        while True:
            self.record.calls += 1
            try:
                answer = await method(request, metadata=meta, timeout=5)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code in FORBIDDEN:
                    self.record.forbidden.append(f"{code.name}: {error.details()}")
                    return code
                again = code in RETRIED or (retry_not_found and code == grpc.StatusCode.NOT_FOUND)
                if not again:
                    return code
                if time.monotonic() > deadline:
                    self.record.gave_up += 1
                    return code
                await asyncio.sleep(0.2)
                continue
            self.record.ok += 1
            return answer


def request_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128)))


async def set_up(clients: Clients, rng: random.Random, ideas: int) -> str:
    """A product and its first ideas, before the kills start."""
    product = await clients.call(
        clients.ideas.CreateProduct,
        ideas_pb.CreateProductRequest(name=f"Crash {rng.getrandbits(32)}"),
        ADMIN,
    )
    assert not isinstance(product, grpc.StatusCode), product
    item = await clients.call(
        clients.rewards.CreateCatalogueItem,
        rewards_pb.CreateCatalogueItemRequest(
            name="Crash mug", price=ITEM_PRICE, stock=ITEM_STOCK, request_id=request_id(rng)
        ),
        ADMIN,
    )
    assert not isinstance(item, grpc.StatusCode), item
    clients.record.item_id = item.item.item_id
    clients.record.item_stock = ITEM_STOCK
    for n in range(ideas):
        await submit(clients, rng, product.product.id, f"author-{n}")
    return str(product.product.id)


async def submit(clients: Clients, rng: random.Random, product_id: str, author: str) -> None:
    answer = await clients.call(
        clients.ideas.SubmitIdea,
        ideas_pb.SubmitIdeaRequest(
            product_id=product_id,
            title=f"Idea {rng.getrandbits(40)}",
            request_id=request_id(rng),
        ),
        metadata(author),
    )
    if not isinstance(answer, grpc.StatusCode):
        clients.record.ideas[answer.idea.id] = author


async def client(
    clients: Clients, seed: int, number: int, members: list[str], product_id: str, stop: float
) -> None:
    """One client's calls until `stop`: its own members' votes and tiers, and
    PM work on any idea."""
    rng = random.Random(f"{seed}/client/{number}")
    record = clients.record
    while time.monotonic() < stop:
        ideas = sorted(record.ideas)
        member = rng.choice(members)
        idea = rng.choice(ideas)
        roll = rng.random()
        if roll < 0.45:
            answer = await clients.call(
                clients.votes.CastVote,
                votes_pb.CastVoteRequest(idea_id=idea, request_id=request_id(rng)),
                metadata(member),
                retry_not_found=True,
            )
            if not isinstance(answer, grpc.StatusCode):
                record.votes[(member, idea)] = True
        elif roll < 0.6:
            voted = sorted(k for k, active in record.votes.items() if k[0] == member and active)
            if voted:
                _, idea = rng.choice(voted)
                answer = await clients.call(
                    clients.votes.RetractVote,
                    votes_pb.RetractVoteRequest(idea_id=idea, request_id=request_id(rng)),
                    metadata(member),
                    retry_not_found=True,
                )
                if not isinstance(answer, grpc.StatusCode):
                    record.votes[(member, idea)] = False
        elif roll < 0.7:
            await submit(clients, rng, product_id, member)
        elif roll < 0.77:
            await _advance(clients, rng, idea)
        elif roll < 0.82:
            await _tier(clients, rng, member)
        elif roll < 0.92:
            answer = await clients.call(
                clients.ideas.AddComment,
                ideas_pb.AddCommentRequest(idea_id=idea, body="me too", request_id=request_id(rng)),
                metadata(member),
            )
            if not isinstance(answer, grpc.StatusCode):
                record.comments.append(answer.comment.id)
        elif roll < 0.94:
            await _points_and_prizes(clients, rng, member)
        elif roll < 0.95:
            target = rng.choice(ideas)
            if target != idea:
                answer = await clients.call(
                    clients.ideas.MergeIdeas,
                    ideas_pb.MergeIdeasRequest(
                        source_idea_id=idea, target_idea_id=target, request_id=request_id(rng)
                    ),
                    PM,
                )
                if not isinstance(answer, grpc.StatusCode):
                    record.merges.append((idea, answer.target.id))
        else:
            await asyncio.sleep(rng.random() * 0.05)


async def _advance(clients: Clients, rng: random.Random, idea: str) -> None:
    got = await clients.call(clients.ideas.GetIdea, ideas_pb.GetIdeaRequest(idea_id=idea), PM)
    if isinstance(got, grpc.StatusCode) or got.idea.status not in NEXT_STATUS:
        return
    new_status = NEXT_STATUS[got.idea.status]
    answer = await clients.call(
        clients.ideas.ChangeIdeaStatus,
        ideas_pb.ChangeIdeaStatusRequest(
            idea_id=idea, status=new_status, request_id=request_id(rng)
        ),
        PM,
    )
    if not isinstance(answer, grpc.StatusCode):
        clients.record.statuses.append((idea, new_status))


async def _tier(clients: Clients, rng: random.Random, member: str) -> None:
    if rng.random() < 0.6:
        tier = rng.choice(TIERS)
        answer = await clients.call(
            clients.rewards.GrantTier,
            rewards_pb.GrantTierRequest(
                member_id=member, tier=tier, reason="crash schedule", request_id=request_id(rng)
            ),
            ADMIN,
        )
    else:
        tier = ""
        answer = await clients.call(
            clients.rewards.RevokeTier,
            rewards_pb.RevokeTierRequest(
                member_id=member, reason="crash schedule", request_id=request_id(rng)
            ),
            ADMIN,
        )
    if not isinstance(answer, grpc.StatusCode):
        clients.record.granted[member] = tier


async def _points_and_prizes(clients: Clients, rng: random.Random, member: str) -> None:
    """An admin grants a member points, or the member spends them on the
    catalogue's item (out of stock and too poor are answers, not faults)."""
    record = clients.record
    if rng.random() < 0.5:
        answer = await clients.call(
            clients.rewards.GrantPoints,
            rewards_pb.GrantPointsRequest(
                member_id=member,
                amount=rng.randint(1, 3) * ITEM_PRICE,
                reason="crash schedule",
                request_id=request_id(rng),
            ),
            ADMIN,
        )
        if not isinstance(answer, grpc.StatusCode):
            record.points.append(answer.entry.entry_id)
        return
    answer = await clients.call(
        clients.rewards.RedeemItem,
        rewards_pb.RedeemItemRequest(item_id=record.item_id, request_id=request_id(rng)),
        metadata(member),
    )
    if not isinstance(answer, grpc.StatusCode):
        record.redemptions.append(answer.redemption.redemption_id)


async def releases(clients: Clients, seed: int, product_id: str, stop: float) -> None:
    """The weekly release, faster: a PM plans a few ideas into an iteration,
    marks some done and cuts the release; the rest roll over."""
    rng = random.Random(f"{seed}/releases")
    record = clients.record
    number = 0
    while time.monotonic() < stop - 2:
        await asyncio.sleep(rng.uniform(3.0, 8.0))
        number += 1
        iteration = await clients.call(
            clients.releases.CreateIteration,
            release_pb.CreateIterationRequest(
                product_id=product_id,
                name=f"Crash sprint {seed}.{number}",
                start_date="2027-01-04",
                end_date="2027-01-10",
                request_id=request_id(rng),
            ),
            PM,
        )
        if isinstance(iteration, grpc.StatusCode):
            continue
        iteration_id = iteration.iteration.id
        for idea in rng.sample(sorted(record.ideas), 3):
            planned = await clients.call(
                clients.releases.PlanIdea,
                release_pb.PlanIdeaRequest(
                    iteration_id=iteration_id, idea_id=idea, request_id=request_id(rng)
                ),
                PM,
            )
            if not isinstance(planned, grpc.StatusCode) and rng.random() < 0.7:
                await clients.call(
                    clients.releases.MarkIdeaDone,
                    release_pb.MarkIdeaDoneRequest(
                        iteration_id=iteration_id, idea_id=idea, request_id=request_id(rng)
                    ),
                    PM,
                )
        cut = await clients.call(
            clients.releases.CutRelease,
            release_pb.CutReleaseRequest(
                iteration_id=iteration_id,
                version=f"Crash {seed}.{number}",
                request_id=request_id(rng),
            ),
            PM,
        )
        if not isinstance(cut, grpc.StatusCode):
            record.releases[cut.release.id] = [i.idea_id for i in cut.release.shipped_ideas]


TARGETS = (*SERVICES, "nats", "postgres", "postgres-immediate")


async def kills(stack: CrashStack, seed: int, record: Record, stop: float) -> None:
    """Kill one part (sometimes two at once) at seeded moments and start it
    again after a seeded pause; sometimes kill a service again while it starts."""
    rng = random.Random(f"{seed}/kills")
    down: set[str] = set()
    while time.monotonic() < stop:
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        stack.check_unplanned_exits(down)
        victims = [rng.choice(TARGETS)]
        if rng.random() < 0.2:
            second = rng.choice(TARGETS)
            if second not in victims and not (second + victims[0]).count("postgres") > 1:
                victims.append(second)
        for victim in victims:
            down.add(victim)
            stack.kill(victim)
            record.kills.append(victim)
        await asyncio.sleep(rng.uniform(0.1, 2.0))
        for victim in victims:
            await stack.restart(victim)
            if victim in SERVICES and rng.random() < 0.25:
                await asyncio.sleep(rng.uniform(0.05, 0.6))  # still starting up
                stack.kill(victim)
                record.kills.append(f"{victim} (starting)")
                await stack.restart(victim)
            down.discard(victim)
    for name in SERVICES:
        await stack.wait_serving(name)
