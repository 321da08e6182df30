"""ListRedemptions: a member's redemptions, newest first, own or (admin) any."""

from __future__ import annotations

import grpc
import pytest
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.kit.server import RunningService
from tests.rewards.helpers import ADMIN, entries, rewards_stub
from tests.support import metadata, violated_fields


async def _item(rewards: RunningService, name: str, price: int) -> str:
    answer = await rewards_stub(rewards).CreateCatalogueItem(
        pb.CreateCatalogueItemRequest(name=name, price=price, stock=10), metadata=ADMIN
    )
    return str(answer.item.item_id)


async def _redeem(rewards: RunningService, member_id: str, *items: str) -> list[pb.Redemption]:
    """Gives the member enough points, then redeems the items one after another."""
    service = rewards_stub(rewards)
    await service.GrantPoints(
        pb.GrantPointsRequest(member_id=member_id, amount=1000, reason="gift"), metadata=ADMIN
    )
    made = []
    for item in items:
        answer = await service.RedeemItem(
            pb.RedeemItemRequest(item_id=item), metadata=metadata(member_id)
        )
        made.append(answer.redemption)
    return made


async def test_a_member_lists_their_own_redemptions_newest_first(rewards: RunningService) -> None:
    mug = await _item(rewards, "Mug", 10)
    hoodie = await _item(rewards, "Hoodie", 30)
    made = await _redeem(rewards, "m1", mug, hoodie, mug)
    await _redeem(rewards, "m2", hoodie)
    assert [r.item_name for r in made] == ["Mug", "Hoodie", "Mug"]
    answer = await rewards_stub(rewards).ListRedemptions(
        pb.ListRedemptionsRequest(), metadata=metadata("m1")
    )
    assert [r.redemption_id for r in answer.redemptions] == [
        r.redemption_id for r in reversed(made)
    ]
    assert [(r.item_id, r.item_name, r.price) for r in answer.redemptions] == [
        (mug, "Mug", 10),
        (hoodie, "Hoodie", 30),
        (mug, "Mug", 10),
    ]
    assert all(r.member_id == "m1" and r.create_time.seconds > 0 for r in answer.redemptions)
    spent = {
        str(e["id"]): -e["amount"]
        for e in await entries(rewards, "m1")
        if e["kind"] == "redemption"
    }
    assert {r.entry_id: r.price for r in answer.redemptions} == spent
    assert not answer.next_page_token


async def test_redemptions_page_through_each_once(rewards: RunningService) -> None:
    sticker = await _item(rewards, "Sticker", 5)
    made = await _redeem(rewards, "m1", *[sticker] * 5)
    service = rewards_stub(rewards)
    seen: list[str] = []
    pages = 0
    token = ""
    while True:
        page = await service.ListRedemptions(
            pb.ListRedemptionsRequest(page_size=2, page_token=token), metadata=metadata("m1")
        )
        pages += 1
        seen.extend(r.redemption_id for r in page.redemptions)
        token = page.next_page_token
        if not token:
            break
    assert seen == [r.redemption_id for r in reversed(made)]
    assert pages == 3
    first = await service.ListRedemptions(
        pb.ListRedemptionsRequest(page_size=2), metadata=metadata("m1")
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.ListRedemptions(
            pb.ListRedemptionsRequest(
                member_id="m9", page_size=2, page_token=first.next_page_token
            ),
            metadata=ADMIN,
        )
    assert violated_fields(caught.value) == {"page_token"}


async def test_a_member_reading_another_members_redemptions_is_permission_denied(
    rewards: RunningService,
) -> None:
    await _redeem(rewards, "m2", await _item(rewards, "Mug", 10))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rewards_stub(rewards).ListRedemptions(
            pb.ListRedemptionsRequest(member_id="m2"), metadata=metadata("m1")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_an_admin_reads_any_members_redemptions(rewards: RunningService) -> None:
    made = await _redeem(rewards, "m2", await _item(rewards, "Mug", 10))
    answer = await rewards_stub(rewards).ListRedemptions(
        pb.ListRedemptionsRequest(member_id="m2"), metadata=ADMIN
    )
    assert [r.redemption_id for r in answer.redemptions] == [made[0].redemption_id]
    assert answer.redemptions[0].member_id == "m2"


async def test_a_negative_page_size_is_invalid_argument(rewards: RunningService) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rewards_stub(rewards).ListRedemptions(
            pb.ListRedemptionsRequest(page_size=-1), metadata=metadata("m1")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {"page_size"}


async def test_a_member_without_redemptions_gets_an_empty_list(rewards: RunningService) -> None:
    await _redeem(rewards, "m2", await _item(rewards, "Mug", 10))
    answer = await rewards_stub(rewards).ListRedemptions(
        pb.ListRedemptionsRequest(), metadata=metadata("m1")
    )
    assert list(answer.redemptions) == []
    assert answer.next_page_token == ""
