"""The tally invariant under generated bursts of concurrent casts, retracts,
tier changes and merges (hypothesis), against the real service: once quiet,
each stored tally equals the recount of its active votes (score = sum of
weights, voters = count, voters per tier), a member has at most one active
vote per idea, and every active vote on an open idea counts with the weight
of its member's current tier."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import grpc
from cocreate.votes.v1 import votes_service_pb2 as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.kit.server import RunningService
from services.votes import domain
from tests.support import Platform, eventually, metadata
from tests.votes import feed

IDEAS = 4
MEMBERS = 5
TIERS = ["newcomer", "member", "core", "honorary"]

member = st.integers(0, MEMBERS - 1)
idea = st.integers(0, IDEAS - 1)
operation = st.one_of(
    st.tuples(st.just("cast"), member, idea),
    st.tuples(st.just("retract"), member, idea),
    st.tuples(st.just("tier"), member, st.sampled_from(TIERS)),
    st.tuples(st.just("merge"), idea, idea),
)
# A list of bursts; the operations of one burst run concurrently.
bursts = st.lists(st.lists(operation, min_size=1, max_size=10), min_size=1, max_size=5)

_examples = itertools.count()
# What a caller may be told while ideas close and votes come and go.
_EXPECTED_REFUSALS = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}


@dataclass
class Example:
    """One generated run, with names of its own on the shared service."""

    svc: RunningService
    number: int
    tier_versions: dict[str, int] = field(default_factory=dict)
    merged: set[str] = field(default_factory=set)
    idea_events: int = 0
    tier_events: int = 0

    def idea(self, n: int) -> str:
        return f"ex{self.number}-idea-{n}"

    def member(self, n: int) -> str:
        return f"ex{self.number}-m{n}"

    @property
    def ideas(self) -> list[str]:
        return [self.idea(n) for n in range(IDEAS)]

    async def run(self, op: tuple[str, int, int | str]) -> None:
        kind, first, second = op
        client = feed.votes(self.svc)
        if kind in ("cast", "retract"):
            assert isinstance(second, int)
            caller = metadata(self.member(first))
            idea_id = self.idea(second)
            try:
                if kind == "cast":
                    await client.CastVote(pb.CastVoteRequest(idea_id=idea_id), metadata=caller)
                else:
                    await client.RetractVote(
                        pb.RetractVoteRequest(idea_id=idea_id), metadata=caller
                    )
            except grpc.aio.AioRpcError as error:
                assert error.code() in _EXPECTED_REFUSALS, error
        elif kind == "tier":
            member_id = self.member(first)
            version = self.tier_versions.get(member_id, 0) + 1
            self.tier_versions[member_id] = version
            self.tier_events += 1
            await feed.change_tier(self.svc, member_id, str(second), version)
        else:
            assert isinstance(second, int)
            source, target = self.idea(first), self.idea(second)
            # The ideas service never merges a merged idea, nor into one.
            if source == target or source in self.merged or target in self.merged:
                return
            self.merged.add(source)
            self.idea_events += 1
            await feed.merge(self.svc, source, target)

    async def handled_so_far(self) -> tuple[int, int]:
        """Events handled by the ideas and the rewards consumers, in all examples."""
        ideas, tiers = await self.svc.runtime.pool.fetchrow(
            "select count(*) filter (where consumer = 'votes-ideas'), "
            "count(*) filter (where consumer = 'votes-rewards') from inbox"
        )
        return int(ideas), int(tiers)

    async def quiet(self, before: tuple[int, int]) -> None:
        """Wait until this example's events are handled and its changes folded."""

        async def handled() -> bool:
            ideas, tiers = await self.handled_so_far()
            return ideas >= before[0] + self.idea_events and tiers >= before[1] + self.tier_events

        await eventually(handled, within=30)
        await feed.folded(self.svc)


async def check_invariants(example: Example) -> None:
    pool = example.svc.runtime.pool
    answer = await feed.votes(example.svc).BatchGetTallies(
        pb.BatchGetTalliesRequest(idea_ids=example.ideas), metadata=metadata("auditor")
    )
    recount = {
        row["idea_id"]: row
        for row in await pool.fetch(
            "select idea_id, coalesce(sum(weight), 0) as score, count(*) as voters "
            "from votes where idea_id = any($1::text[]) and active group by idea_id",
            example.ideas,
        )
    }
    by_tier = await pool.fetch(
        "select idea_id, tier, count(*) as voters from votes "
        "where idea_id = any($1::text[]) and active group by idea_id, tier",
        example.ideas,
    )
    for tally in answer.tallies:
        expected = recount.get(tally.idea_id)
        score, voters = (expected["score"], expected["voters"]) if expected else (0, 0)
        assert (tally.weighted_score, tally.voter_count) == (score, voters), tally
        tiers = {r["tier"]: r["voters"] for r in by_tier if r["idea_id"] == tally.idea_id}
        assert dict(tally.voters_by_tier) == tiers
    assert len(answer.tallies) == IDEAS

    doubled = await pool.fetchval(
        "select count(*) from (select 1 from votes where active and idea_id = any($1::text[]) "
        "group by idea_id, member_id having count(*) > 1) d",
        example.ideas,
    )
    assert doubled == 0
    policy = domain.WeightPolicy(domain.DEFAULT_WEIGHTS)
    for row in await pool.fetch(
        "select v.member_id, v.weight, v.tier, m.tier as member_tier from votes v "
        "join ideas i using (idea_id) left join members m using (member_id) "
        "where v.active and i.open and v.idea_id = any($1::text[])",
        example.ideas,
    ):
        tier = policy.tier_of(row["member_tier"])
        assert (row["tier"], row["weight"]) == (tier, policy.weight_of(tier)), dict(row)
    assert not set(example.merged) & {r["idea_id"] for r in by_tier}, (
        "a merged idea kept active votes"
    )


_services: dict[int, RunningService] = {}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=bursts)
async def test_tallies_equal_the_recount_after_concurrent_bursts(
    platform: Platform, plan: list[list[tuple[str, int, int | str]]]
) -> None:
    # One service for every example of this test; each example has its own ideas and members.
    if id(platform) not in _services:
        _services[id(platform)] = await platform.start(
            "votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"}
        )
    svc = _services[id(platform)]
    example = Example(svc, next(_examples))
    before = await example.handled_so_far()
    await feed.submit_ideas(svc, *example.ideas)
    example.idea_events += IDEAS
    for burst in plan:
        await asyncio.gather(*(example.run(op) for op in burst))
    await example.quiet(before)
    await check_invariants(example)
