"""The platform's flows across services, each service running for real and
talking to the others only through JetStream events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.rewards.v1 import rewards_service_pb2 as rewards
from cocreate.rewards.v1 import rewards_service_pb2_grpc as rewards_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from tests.support import Platform, cast_when_known, eventually, metadata, stub, submit_idea
from tests.support import new_product as support_new_product

PM = metadata("pm-1", "pm")
ADMIN = metadata("admin-1", "admin")


@dataclass
class Clients:
    ideas: ideas_grpc.IdeaServiceStub
    votes: votes_grpc.VoteServiceStub
    rewards: rewards_grpc.RewardsServiceStub | None = None


async def start(platform: Platform, *, with_rewards: bool = False) -> Clients:
    ideas_service = await platform.start("ideas")
    votes_service = await platform.start("votes")
    clients = Clients(
        ideas=stub(ideas_service, ideas_grpc.IdeaServiceStub),
        votes=stub(votes_service, votes_grpc.VoteServiceStub),
    )
    if with_rewards:
        clients.rewards = stub(await platform.start("rewards"), rewards_grpc.RewardsServiceStub)
    return clients


async def submit(clients: Clients, product_id: str, author: str, title: str) -> str:
    return (await submit_idea(clients.ideas, product_id, author, title)).id


async def new_product(clients: Clients) -> str:
    return await support_new_product(clients.ideas)


async def cast(clients: Clients, idea_id: str, member: str) -> votes.Vote:
    return await cast_when_known(clients.votes, idea_id, member)


async def move_through(
    clients: Clients, idea_id: str, statuses: Sequence[status.IdeaStatus.ValueType]
) -> None:
    for next_status in statuses:
        await clients.ideas.ChangeIdeaStatus(
            ideas.ChangeIdeaStatusRequest(idea_id=idea_id, status=next_status),
            metadata=PM,
        )


async def tally(clients: Clients, idea_id: str) -> votes.Tally:
    answer: votes.GetTallyResponse = await clients.votes.GetTally(
        votes.GetTallyRequest(idea_id=idea_id), metadata=PM
    )
    return answer.tally


async def test_a_vote_moves_the_idea_up_in_list_ideas_by_top(platform: Platform) -> None:
    clients = await start(platform)
    product = await new_product(clients)
    first = await submit(clients, product, "author-1", "Dark mode for the launcher")
    second = await submit(clients, product, "author-2", "Longer battery life in standby")
    for member in ("m1", "m2", "m3"):
        await cast(clients, second, member)

    async def top_order() -> list[tuple[str, int, int]] | None:
        answer = await clients.ideas.ListIdeas(
            ideas.ListIdeasRequest(
                filter=ideas.IdeaFilter(product_id=product), order=ideas.IDEA_ORDER_TOP
            ),
            metadata=metadata("reader"),
        )
        found = [(i.id, i.weighted_score, i.voter_count) for i in answer.ideas]
        return found if found and found[0][1] == 3 else None

    # Three newcomers (weight 1 each) on the second idea: it leads with score 3.
    assert await eventually(top_order) == [(second, 3, 3), (first, 0, 0)]


async def test_merge_chain_ends_with_every_vote_on_the_final_target(platform: Platform) -> None:
    clients = await start(platform)
    product = await new_product(clients)
    a = await submit(clients, product, "author-a", "Call recording on all carriers")
    b = await submit(clients, product, "author-b", "Record phone calls everywhere")
    c = await submit(clients, product, "author-c", "Built-in call recorder")
    await cast(clients, a, "alice")
    await cast(clients, a, "both")
    await cast(clients, b, "bob")
    await cast(clients, c, "carol")
    await cast(clients, c, "both")  # supports A and C: keeps one vote

    await clients.ideas.MergeIdeas(
        ideas.MergeIdeasRequest(source_idea_id=a, target_idea_id=b), metadata=PM
    )
    await clients.ideas.MergeIdeas(
        ideas.MergeIdeasRequest(source_idea_id=b, target_idea_id=c), metadata=PM
    )

    async def all_on_c() -> bool:
        on_c, on_a, on_b = [await tally(clients, i) for i in (c, a, b)]
        return (on_c.voter_count, on_a.voter_count, on_b.voter_count) == (4, 0, 0)

    await eventually(all_on_c)
    supporters = await clients.votes.ListSupporters(
        votes.ListSupportersRequest(idea_id=c), metadata=PM
    )
    assert sorted(v.member_id for v in supporters.supporters) == ["alice", "bob", "both", "carol"]

    async def read_model_follows() -> bool:
        answer: ideas.GetIdeaResponse = await clients.ideas.GetIdea(
            ideas.GetIdeaRequest(idea_id=c), metadata=PM
        )
        return answer.idea.voter_count == 4 and answer.idea.weighted_score == 4

    await eventually(read_model_follows)


async def test_shipping_pays_the_author_and_the_supporters_at_that_moment_once(
    platform: Platform,
) -> None:
    clients = await start(platform, with_rewards=True)
    assert clients.rewards is not None
    product = await new_product(clients)
    idea = await submit(clients, product, "author", "Per-app volume control")
    for member in ("s1", "s2", "gone"):
        await cast(clients, idea, member)
    await clients.votes.RetractVote(
        votes.RetractVoteRequest(idea_id=idea), metadata=metadata("gone")
    )
    await move_through(
        clients,
        idea,
        [
            status.IDEA_STATUS_UNDER_REVIEW,
            status.IDEA_STATUS_PLANNED,
            status.IDEA_STATUS_IN_PROGRESS,
            status.IDEA_STATUS_SHIPPED,
        ],
    )
    rewards_stub = clients.rewards

    async def entries(member: str, rule: str) -> list[rewards.Entry]:
        answer = await rewards_stub.ListEntries(
            rewards.ListEntriesRequest(member_id=member, page_size=100), metadata=ADMIN
        )
        return [e for e in answer.entries if e.rule_id == rule]

    async def everyone_paid() -> bool:
        author = await entries("author", "idea_shipped_author")
        supporters = [await entries(m, "idea_shipped_supporter") for m in ("s1", "s2")]
        return len(author) == 1 and all(len(s) == 1 for s in supporters)

    await eventually(everyone_paid)
    assert [e.amount for e in await entries("author", "idea_shipped_author")] == [500]
    assert [e.amount for e in await entries("s1", "idea_shipped_supporter")] == [20]
    assert await entries("gone", "idea_shipped_supporter") == []

    # Everything is quiet now; the payments stay single.
    verify = await rewards_stub.VerifyLedger(rewards.VerifyLedgerRequest(), metadata=ADMIN)
    assert verify.ok
    assert len(await entries("author", "idea_shipped_author")) == 1


async def test_a_tier_grant_reweights_votes_on_open_ideas_only(platform: Platform) -> None:
    clients = await start(platform, with_rewards=True)
    assert clients.rewards is not None
    product = await new_product(clients)
    open_idea = await submit(clients, product, "author-1", "Quieter keyboard sounds")
    shipped_idea = await submit(clients, product, "author-2", "Faster fingerprint unlock")
    await cast(clients, open_idea, "fan")
    await cast(clients, shipped_idea, "fan")
    await move_through(
        clients,
        shipped_idea,
        [
            status.IDEA_STATUS_UNDER_REVIEW,
            status.IDEA_STATUS_PLANNED,
            status.IDEA_STATUS_IN_PROGRESS,
            status.IDEA_STATUS_SHIPPED,
        ],
    )

    async def closed() -> bool:
        return not (await tally(clients, shipped_idea)).open

    await eventually(closed)
    await clients.rewards.GrantTier(
        rewards.GrantTierRequest(member_id="fan", tier="honorary", reason="beta tester"),
        metadata=ADMIN,
    )

    async def reweighted() -> bool:
        return (await tally(clients, open_idea)).weighted_score == 5

    await eventually(reweighted)
    assert (await tally(clients, shipped_idea)).weighted_score == 1
