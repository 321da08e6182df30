"""Finding 2: NUL characters and out-of-range timestamps are the caller's
mistake in every service: INVALID_ARGUMENT naming the field, nothing changed."""

from __future__ import annotations

import itertools
from typing import Any

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.rewards.v1 import rewards_service_pb2 as rewards_pb
from cocreate.rewards.v1 import rewards_service_pb2_grpc as rewards_grpc
from cocreate.votes.v1 import votes_service_pb2 as votes_pb
from cocreate.votes.v1 import votes_service_pb2_grpc as votes_grpc
from google.protobuf import timestamp_pb2

from tests.support import Platform, metadata, stub, violated_fields

ADMIN = metadata("admin-1", "admin")
NUL = "nul \x00 here"


async def _refused(call: Any, request: Any, fields: set[str]) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call(request, metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    assert violated_fields(caught.value) == fields


async def test_rewards_refuses_nul_in_every_text(platform: Platform) -> None:
    api = stub(await platform.start("rewards"), rewards_grpc.RewardsServiceStub)
    await _refused(
        api.GrantPoints,
        rewards_pb.GrantPointsRequest(member_id="m", amount=5, reason=NUL),
        {"reason"},
    )
    await _refused(
        api.DeductPoints,
        rewards_pb.DeductPointsRequest(member_id="m", amount=5, reason=NUL),
        {"reason"},
    )
    await _refused(
        api.GrantTier,
        rewards_pb.GrantTierRequest(member_id="m", tier="core", reason=NUL),
        {"reason"},
    )
    await _refused(
        api.RevokeTier, rewards_pb.RevokeTierRequest(member_id="m", reason=NUL), {"reason"}
    )
    await _refused(api.GetRule, rewards_pb.GetRuleRequest(rule_id="vote\x00"), {"rule_id"})
    await _refused(
        api.UpdateRule, rewards_pb.UpdateRuleRequest(rule_id="vote\x00", points=3), {"rule_id"}
    )
    await _refused(
        api.CreateCatalogueItem,
        rewards_pb.CreateCatalogueItemRequest(name=NUL, description=NUL, price=10, stock=1),
        {"name", "description"},
    )
    created = await api.CreateCatalogueItem(
        rewards_pb.CreateCatalogueItemRequest(name="Mug", price=10, stock=1), metadata=ADMIN
    )
    await _refused(
        api.UpdateCatalogueItem,
        rewards_pb.UpdateCatalogueItemRequest(
            item_id=created.item.item_id, name=NUL, description=NUL
        ),
        {"name", "description"},
    )
    account = await api.GetAccount(rewards_pb.GetAccountRequest(member_id="m"), metadata=ADMIN)
    assert account.account.balance == 0 and account.account.tier == "newcomer"
    item = await api.GetCatalogueItem(
        rewards_pb.GetCatalogueItemRequest(item_id=created.item.item_id), metadata=ADMIN
    )
    assert item.item.name == "Mug"


async def test_votes_refuses_nul_in_reasons(platform: Platform) -> None:
    api = stub(await platform.start("votes"), votes_grpc.VoteServiceStub)
    await _refused(
        api.VoidMemberVotes,
        votes_pb.VoidMemberVotesRequest(member_id="spammer", reason=NUL, ban=True),
        {"reason"},
    )
    await _refused(
        api.LiftVoteBan, votes_pb.LiftVoteBanRequest(member_id="spammer", reason=NUL), {"reason"}
    )


OUT_OF_RANGE = [(2**62, 0), (-(2**62), 0), (0, 1_000_000_000), (0, -1), (253_402_300_800, 0)]


async def test_export_refuses_timestamps_out_of_range(platform: Platform) -> None:
    api = stub(await platform.start("ideas"), ideas_grpc.IdeaServiceStub)
    for (seconds, nanos), field in itertools.product(
        OUT_OF_RANGE, ("created_after", "created_before")
    ):
        stamp = timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos)
        request = ideas_pb.ExportIdeasRequest()
        getattr(request, field).CopyFrom(stamp)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            async for _ in api.ExportIdeas(request, metadata=ADMIN):
                pass
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(caught.value) == {field}
    edge = ideas_pb.ExportIdeasRequest(
        created_after=timestamp_pb2.Timestamp(seconds=-62_135_596_800),
        created_before=timestamp_pb2.Timestamp(seconds=253_402_300_799, nanos=999_999_999),
    )
    assert [item async for item in api.ExportIdeas(edge, metadata=ADMIN)] == []
