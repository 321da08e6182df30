"""The catalogue (admin) and redemption: never overdrawn, never oversold."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from cocreate.rewards.v1 import rewards_service_pb2 as pb

from services.kit.server import RunningService
from tests.rewards.helpers import ADMIN, balance, entries, rewards_stub
from tests.support import error_reason, metadata, violated_fields


async def _item(rewards: RunningService, price: int, stock: int, name: str = "Sticker") -> str:
    answer = await rewards_stub(rewards).CreateCatalogueItem(
        pb.CreateCatalogueItemRequest(name=name, price=price, stock=stock), metadata=ADMIN
    )
    return str(answer.item.item_id)


async def _grant(rewards: RunningService, member_id: str, amount: int) -> None:
    await rewards_stub(rewards).GrantPoints(
        pb.GrantPointsRequest(member_id=member_id, amount=amount, reason="gift"), metadata=ADMIN
    )


async def test_admins_manage_the_catalogue_and_members_see_available_items(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    mug = await _item(rewards, 100, 3, "Mug")
    hoodie = await _item(rewards, 900, 1, "Hoodie")
    updated = await service.UpdateCatalogueItem(
        pb.UpdateCatalogueItemRequest(item_id=hoodie, available=False, price=800), metadata=ADMIN
    )
    assert (updated.item.price, updated.item.available, updated.item.name) == (800, False, "Hoodie")
    member_view = await service.ListCatalogueItems(
        pb.ListCatalogueItemsRequest(), metadata=metadata("m1")
    )
    assert [i.item_id for i in member_view.items] == [mug]
    admin_view = await service.ListCatalogueItems(
        pb.ListCatalogueItemsRequest(include_unavailable=True, page_size=1), metadata=ADMIN
    )
    assert [i.name for i in admin_view.items] == ["Hoodie"]
    rest = await service.ListCatalogueItems(
        pb.ListCatalogueItemsRequest(
            include_unavailable=True, page_token=admin_view.next_page_token
        ),
        metadata=ADMIN,
    )
    assert [i.name for i in rest.items] == ["Mug"] and not rest.next_page_token
    got = await service.GetCatalogueItem(
        pb.GetCatalogueItemRequest(item_id=mug), metadata=metadata("m1")
    )
    assert got.item.stock == 3


async def test_the_catalogue_is_admin_only_and_validated(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.CreateCatalogueItem(
            pb.CreateCatalogueItemRequest(name="Mug", price=1, stock=1), metadata=metadata("m1")
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.CreateCatalogueItem(
            pb.CreateCatalogueItemRequest(name=" ", price=0, stock=-1), metadata=ADMIN
        )
    assert violated_fields(caught.value) == {"name", "price", "stock"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.UpdateCatalogueItem(
            pb.UpdateCatalogueItemRequest(item_id="not-a-uuid"), metadata=ADMIN
        )
    assert violated_fields(caught.value) == {"item_id"}
    assert await rewards.runtime.pool.fetchval("select count(*) from catalogue_items") == 0


async def test_a_redemption_spends_points_and_stock_once_per_request_id(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    await _grant(rewards, "m1", 50)
    item = await _item(rewards, 20, 5)
    request = pb.RedeemItemRequest(item_id=item, request_id="buy-1")
    first = await service.RedeemItem(request, metadata=metadata("m1"))
    again = await service.RedeemItem(request, metadata=metadata("m1"))
    assert again.redemption.redemption_id == first.redemption.redemption_id
    assert first.account.balance == 30
    spent = [e for e in await entries(rewards, "m1") if e["kind"] == "redemption"]
    assert [e["amount"] for e in spent] == [-20]
    stock = await service.GetCatalogueItem(pb.GetCatalogueItemRequest(item_id=item), metadata=ADMIN)
    assert stock.item.stock == 4


async def test_redeeming_without_points_or_stock_is_failed_precondition(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    pricey = await _item(rewards, 100, 5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.RedeemItem(pb.RedeemItemRequest(item_id=pricey), metadata=metadata("m1"))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "INSUFFICIENT_POINTS"
    await _grant(rewards, "m1", 100)
    gone = await _item(rewards, 1, 0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.RedeemItem(pb.RedeemItemRequest(item_id=gone), metadata=metadata("m1"))
    assert error_reason(caught.value) == "OUT_OF_STOCK"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await service.RedeemItem(
            pb.RedeemItemRequest(item_id="00000000-0000-0000-0000-000000000001"),
            metadata=metadata("m1"),
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await balance(rewards, "m1") == 100


async def test_a_hundred_concurrent_redemptions_against_ten_items_worth_of_points(
    rewards: RunningService,
) -> None:
    service = rewards_stub(rewards)
    await _grant(rewards, "m1", 100)
    item = await _item(rewards, 10, 1000)

    async def redeem(n: int) -> str:
        try:
            await service.RedeemItem(
                pb.RedeemItemRequest(item_id=item, request_id=f"r-{n}"), metadata=metadata("m1")
            )
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            return error_reason(error)
        return "OK"

    outcomes = await asyncio.gather(*(redeem(n) for n in range(100)))
    assert outcomes.count("OK") == 10
    assert outcomes.count("INSUFFICIENT_POINTS") == 90
    assert await balance(rewards, "m1") == 0
    stock = await service.GetCatalogueItem(pb.GetCatalogueItemRequest(item_id=item), metadata=ADMIN)
    assert stock.item.stock == 990


async def test_a_hundred_concurrent_redemptions_never_oversell(rewards: RunningService) -> None:
    service = rewards_stub(rewards)
    members = [f"m{n}" for n in range(100)]
    for member in members:
        await _grant(rewards, member, 10)
    item = await _item(rewards, 10, 10)

    async def redeem(member: str) -> str:
        try:
            await service.RedeemItem(pb.RedeemItemRequest(item_id=item), metadata=metadata(member))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
            return error_reason(error)
        return "OK"

    outcomes = await asyncio.gather(*(redeem(m) for m in members))
    assert outcomes.count("OK") == 10
    assert outcomes.count("OUT_OF_STOCK") == 90
    stock = await service.GetCatalogueItem(pb.GetCatalogueItemRequest(item_id=item), metadata=ADMIN)
    assert stock.item.stock == 0
    answer = await service.VerifyLedger(pb.VerifyLedgerRequest(), metadata=ADMIN)
    assert answer.ok and answer.entries_checked == 110
