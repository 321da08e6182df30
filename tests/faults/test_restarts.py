"""Invariant 1: a vote answered OK survives a kill -9 of the broker or the
database, and once things are quiet again every service agrees on it.

These tests own their Postgres and nats-server (the session's are shared with
other tests, so they cannot be killed) and restart them on the same port and
data folder, as an operator's supervisor would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc

from deploy.localstack import LocalNats, LocalPostgres
from tests.conftest import start_on_a_free_port
from tests.support import Platform, cast_when_known, eventually, metadata, stub

PM = metadata("pm-1", "pm")
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND}


@pytest.fixture
def own_servers(tmp_path: Path) -> Iterator[tuple[LocalPostgres, LocalNats]]:
    postgres = start_on_a_free_port(lambda port: LocalPostgres(tmp_path / "pg", port))
    nats_server = start_on_a_free_port(
        lambda port: LocalNats(tmp_path / "js", port, sync_always=True)
    )
    yield postgres, nats_server
    nats_server.stop()
    postgres.stop()


def restarted(server: LocalNats | LocalPostgres) -> None:
    """kill -9, then start again on the same port with the same data."""
    server.kill()
    server.start()


async def cast_until_ok(client: votes_grpc.VoteServiceStub, idea_id: str, member: str) -> None:
    """A client's retry loop: UNAVAILABLE (a server restarting) and NOT_FOUND
    (the idea's event not there yet) are worth retrying; OK means committed."""
    await cast_when_known(client, idea_id, member, retry=RETRYABLE, within=60)


async def test_votes_answered_ok_survive_broker_and_database_kills(
    own_platform: Platform, own_servers: tuple[LocalPostgres, LocalNats]
) -> None:
    postgres, nats_server = own_servers
    ideas_client = stub(await own_platform.start("ideas"), ideas_grpc.IdeaServiceStub)
    votes_service = await own_platform.start("votes")
    votes_client = stub(votes_service, votes_grpc.VoteServiceStub)
    product = await ideas_client.CreateProduct(
        ideas.CreateProductRequest(name="Phone OS"), metadata=metadata("admin-1", "admin")
    )
    submitted = await ideas_client.SubmitIdea(
        ideas.SubmitIdeaRequest(product_id=product.product.id, title="Offline maps"),
        metadata=metadata("author"),
    )
    idea_id = submitted.idea.id
    answered_ok: list[str] = []

    async def cast_batch(prefix: str) -> None:
        for n in range(5):
            member = f"{prefix}-{n}"
            await cast_until_ok(votes_client, idea_id, member)
            answered_ok.append(member)

    await cast_batch("before")
    restarted(nats_server)  # the broker dies and comes back
    await cast_batch("after-broker")
    restarted(postgres)  # both databases die and come back
    await cast_batch("after-database")

    async def everyone_agrees() -> bool | None:
        try:
            tally = await votes_client.GetTally(votes.GetTallyRequest(idea_id=idea_id), metadata=PM)
            idea = await ideas_client.GetIdea(ideas.GetIdeaRequest(idea_id=idea_id), metadata=PM)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.UNAVAILABLE:
                return False
            raise
        want = len(answered_ok)
        seen.append((want, tally.tally.voter_count, idea.idea.voter_count))
        return bool(
            tally.tally.voter_count == want
            and idea.idea.voter_count == want
            and idea.idea.weighted_score == tally.tally.weighted_score
        )

    seen: list[tuple[int, int, int]] = []  # (answered OK, votes' tally, ideas' read model)

    try:
        await eventually(everyone_agrees, within=60)
    except AssertionError as failure:
        raise AssertionError(f"{failure}; last (ok, tally, read model): {seen[-1:]}") from None
    recount = await votes_service.runtime.pool.fetchval(
        "select count(*) from votes where idea_id = $1 and active", idea_id
    )
    assert recount == len(answered_ok) == 15
