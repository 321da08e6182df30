"""Tiers from lifetime points and granted by admins, their events; the rules API."""

from __future__ import annotations

import grpc
import pytest
from cocreate.events.v1 import rewards_events_pb2
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.kit.server import RunningService
from tests.rewards.helpers import ADMIN, emitted, rewards_stub, subject_of
from tests.support import Platform, error_reason, metadata, violated_fields


async def _tier_events(rewards: RunningService) -> list[tuple[str, str, str, int, int]]:
    found = []
    for envelope in await emitted(rewards, subject_of(rewards_events_pb2.TierChanged)):
        event = rewards_events_pb2.TierChanged()
        envelope.payload.Unpack(event)
        found.append(
            (
                event.member_id,
                event.old_tier,
                event.new_tier,
                event.version,
                envelope.aggregate_version,
            )
        )
    return found


async def test_crossing_a_threshold_changes_the_tier_and_emits_tier_changed(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    answer = await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=99, reason="gift"), metadata=ADMIN
    )
    assert (answer.account.tier, answer.account.points_to_next_tier) == ("newcomer", 1)
    answer = await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=901, reason="gift"), metadata=ADMIN
    )
    assert (answer.account.tier, answer.account.tier_version) == ("core", 1)
    assert (answer.account.next_tier, answer.account.points_to_next_tier) == ("", 0)
    assert await _tier_events(rewards) == [("m1", "newcomer", "core", 1, 1)]


async def test_spending_never_lowers_a_tier(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    await service.GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=150, reason="gift"), metadata=ADMIN
    )
    item = await service.CreateCatalogueItem(
        pb.CreateCatalogueItemRequest(name="Mug", price=150, stock=5), metadata=ADMIN
    )
    answer = await service.RedeemItem(
        pb.RedeemItemRequest(item_id=item.item.item_id), metadata=metadata("m1")
    )
    assert (answer.account.balance, answer.account.lifetime_points) == (0, 150)
    assert answer.account.tier == "member"


async def test_admins_grant_and_revoke_honorary_tiers_with_recorded_versions(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    granted = await service.GrantTier(
        pb.GrantTierRequest(member_id="m1", tier="honorary", reason="community hero"),
        metadata=ADMIN,
    )
    assert (granted.account.tier, granted.account.granted_tier) == ("honorary", "honorary")
    assert granted.account.earned_tier == "newcomer"
    revoked = await service.RevokeTier(
        pb.RevokeTierRequest(member_id="m1", reason="term ended"), metadata=ADMIN
    )
    assert (revoked.account.tier, revoked.account.granted_tier, revoked.account.tier_version) == (
        "newcomer",
        "",
        2,
    )
    assert await _tier_events(rewards) == [
        ("m1", "newcomer", "honorary", 1, 1),
        ("m1", "honorary", "newcomer", 2, 2),
    ]
    changes = await service.ListTierChanges(pb.ListTierChangesRequest(), metadata=metadata("m1"))
    assert [(c.version, c.new_tier, c.reason, c.actor_id) for c in changes.tier_changes] == [
        (2, "newcomer", "term ended", "admin-1"),
        (1, "honorary", "community hero", "admin-1"),
    ]


async def test_tier_grants_are_admin_only_and_validated(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.GrantTier(
            pb.GrantTierRequest(member_id="m1", tier="core", reason="me"), metadata=metadata("m1")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.GrantTier(
            pb.GrantTierRequest(member_id="", tier="emperor", reason=""), metadata=ADMIN
        )
    assert violated_fields(caught.value) == {"member_id", "tier", "reason"}
    assert await _tier_events(rewards) == []


async def test_admins_read_and_update_versioned_rules(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    rules = await service.ListRules(pb.ListRulesRequest(), metadata=ADMIN)
    defaults = {r.rule_id: (r.points, r.daily_cap, r.version) for r in rules.rules}
    assert defaults == {
        "idea_accepted": (50, 0, 1),
        "idea_shipped_author": (500, 0, 1),
        "idea_shipped_supporter": (20, 0, 1),
        "idea_submitted": (5, 3, 1),
        "vote_cast": (1, 10, 1),
    }
    updated = await service.UpdateRule(
        pb.UpdateRuleRequest(rule_id="vote_cast", daily_cap=20, expected_version=1),
        metadata=ADMIN,
    )
    assert (updated.rule.points, updated.rule.daily_cap, updated.rule.version) == (1, 20, 2)
    assert updated.rule.updated_by == "admin-1"
    read = await service.GetRule(pb.GetRuleRequest(rule_id="vote_cast"), metadata=ADMIN)
    assert read.rule == updated.rule
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.UpdateRule(
            pb.UpdateRuleRequest(rule_id="vote_cast", points=3, expected_version=1),
            metadata=ADMIN,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(caught.value) == "VERSION_MISMATCH"


async def test_rules_are_admin_only_and_validated(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.ListRules(pb.ListRulesRequest(), metadata=metadata("m1"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.UpdateRule(
            pb.UpdateRuleRequest(rule_id="nope", points=1), metadata=metadata("m1")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.UpdateRule(
            pb.UpdateRuleRequest(rule_id="vote_cast", points=-1, daily_cap=-2), metadata=ADMIN
        )
    assert violated_fields(caught.value) == {"points", "daily_cap"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.GetRule(pb.GetRuleRequest(rule_id="nope"), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.GetRule(pb.GetRuleRequest(), metadata=ADMIN)
    assert violated_fields(caught.value) == {"rule_id"}
    read = await service.GetRule(pb.GetRuleRequest(rule_id="vote_cast"), metadata=ADMIN)
    assert read.rule.version == 1


async def test_tier_thresholds_come_from_the_settings(platform: Platform) -> None:
    rewards = await platform.start(
        "rewards",
        env={
            "COCREATE_REWARDS_TIER_MEMBER_POINTS": "10",
            "COCREATE_REWARDS_TIER_CORE_POINTS": "20",
        },
    )
    answer = await rewards_stub(rewards).GrantPoints(
        pb.GrantPointsRequest(member_id="m1", amount=15, reason="gift"), metadata=ADMIN
    )
    assert (answer.account.tier, answer.account.next_tier) == ("member", "core")
    assert answer.account.points_to_next_tier == 5
