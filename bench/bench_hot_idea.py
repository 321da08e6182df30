"""Hot idea: 2,000 members vote on one idea at the same moment, against the
same 2,000 votes spread over 2,000 ideas, on the real stack (Postgres, NATS,
the votes service over gRPC).

A cast writes only its own vote row and an append-only tally mark; the tally
folder recounts marked ideas in one writer (services/votes/tallies.py). So
the hot burst should take about as long as the spread one (goal: ratio ≤ 2),
and both end with exact tallies. Printed: the time until every vote was
answered, the time until the tallies were folded, and the ratios.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cocreate.votes.v1 import votes_service_pb2 as pb
from cocreate.votes.v1 import votes_service_pb2_grpc as pb_grpc

from deploy.localstack import LocalNats, LocalPostgres, free_port
from services.kit.server import RunningService
from tests.support import Platform, metadata
from tests.votes import feed

MEMBERS = 2000
HOT_IDEA = "hot-idea"
# Calls in flight at once: every member at the same moment. (The kit raises
# gRPC's limit of calls waiting to be taken, COCREATE_MAX_PENDING_CALLS, so
# none of them is turned away.)
IN_FLIGHT = MEMBERS


@dataclass(frozen=True)
class Burst:
    answered_seconds: float
    folded_seconds: float


@dataclass(frozen=True)
class Comparison:
    members: int
    hot: Burst
    spread: Burst

    @property
    def ratio(self) -> float:
        return self.hot.answered_seconds / self.spread.answered_seconds

    @property
    def folded_ratio(self) -> float:
        return self.hot.folded_seconds / self.spread.folded_seconds

    def report(self) -> str:
        return (
            f"{self.members} members voting at once ({IN_FLIGHT} calls in flight) "
            f"on one idea: {self.hot.answered_seconds:.2f}s "
            f"(tallies folded after {self.hot.folded_seconds:.2f}s); "
            f"spread over {self.members} ideas: {self.spread.answered_seconds:.2f}s "
            f"(folded after {self.spread.folded_seconds:.2f}s); "
            f"ratio hot/spread {self.ratio:.2f} answered, {self.folded_ratio:.2f} folded"
        )


async def _burst(
    svc: RunningService,
    client: pb_grpc.VoteServiceStub,
    votes: list[tuple[str, str]],
) -> Burst:
    """Cast every (member, idea) vote at once; wait until the tallies are folded."""
    calls = [
        (pb.CastVoteRequest(idea_id=idea_id), metadata(member_id)) for member_id, idea_id in votes
    ]
    streams = asyncio.Semaphore(IN_FLIGHT)

    async def cast(
        request: pb.CastVoteRequest, call_metadata: tuple[tuple[str, str], ...]
    ) -> pb.CastVoteResponse:
        async with streams:
            answer: pb.CastVoteResponse = await client.CastVote(request, metadata=call_metadata)
            return answer

    started = time.perf_counter()
    answers = await asyncio.gather(*(cast(request, md) for request, md in calls))
    answered = time.perf_counter() - started
    assert all(answer.vote.active for answer in answers)
    await feed.folded(svc)
    return Burst(answered, time.perf_counter() - started)


async def compare(svc: RunningService, members: int = MEMBERS) -> Comparison:
    """Both bursts on a running votes service; checks that every tally is exact."""
    client = feed.votes(svc)
    spread_ideas = [f"spread-{n}" for n in range(members)]
    await feed.submit_ideas(svc, "warm-up", HOT_IDEA, *spread_ideas)
    # Open the pool's connections and the channel before measuring.
    await _burst(svc, client, [(f"warm-{n}", "warm-up") for n in range(50)])

    spread = await _burst(
        svc, client, [(f"spread-member-{n}", spread_ideas[n]) for n in range(members)]
    )
    hot = await _burst(svc, client, [(f"hot-member-{n}", HOT_IDEA) for n in range(members)])

    tally = await feed.tally(client, HOT_IDEA)
    assert (tally.weighted_score, tally.voter_count) == (members, members), tally
    wrong = await svc.runtime.pool.fetchval(
        "select count(*) from tallies where idea_id like 'spread-%' "
        "and (weighted_score, voter_count) <> (1, 1)"
    )
    assert wrong == 0
    return Comparison(members, hot, spread)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cocreate-bench-") as folder:
        postgres = LocalPostgres(Path(folder) / "pg", free_port(), durable=False)
        nats_server = LocalNats(Path(folder) / "nats", free_port(), sync_always=False)
        postgres.start()
        nats_server.start()
        platform = Platform(postgres, nats_server)
        try:
            svc = await platform.start("votes")
            result = await compare(svc)
        finally:
            await platform.stop_all()
            nats_server.stop()
            postgres.stop()
    print(result.report(), flush=True)
