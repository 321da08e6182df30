"""The leaderboard: top contributors of the week, the month and all time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cocreate.events.v1 import ideas_events_pb2
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.rewards.v1 import rewards_service_pb2 as pb
from google.protobuf import timestamp_pb2

from services.kit.server import RunningService
from tests.rewards.helpers import ADMIN, change_status, handled, rewards_stub
from tests.support import emit, eventually, metadata, violated_fields


async def _board(
    rewards: RunningService, period: pb.LeaderboardPeriod.ValueType
) -> list[tuple[int, str, int, int]]:
    rows: list[tuple[int, str, int, int]] = []
    token = ""
    while True:
        page = await rewards_stub(rewards).ListLeaderboard(
            pb.ListLeaderboardRequest(period=period, page_size=2, page_token=token),
            metadata=metadata("anyone"),
        )
        rows.extend((e.rank, e.member_id, e.points_earned, e.ideas_shipped) for e in page.entries)
        token = page.next_page_token
        if not token:
            return rows


async def test_the_leaderboard_ranks_points_earned_and_ideas_shipped_per_period(
    rewards: RunningService,
) -> None:
    long_ago = timestamp_pb2.Timestamp()
    long_ago.FromDatetime(datetime.now(UTC) - timedelta(days=40))
    old = await emit(
        rewards,
        ideas_events_pb2.IdeaSubmitted(idea_id="old", author_id="veteran", submit_time=long_ago),
        source="ideas",
        aggregate_id="old",
        aggregate_version=1,
    )
    shipped = await change_status(rewards, "new", "builder", status.IDEA_STATUS_SHIPPED, 2)
    await eventually(lambda: handled(rewards, old))
    await eventually(lambda: handled(rewards, shipped))
    service = rewards_stub(rewards)
    await service.GrantPoints(
        pb.GrantPointsRequest(member_id="helper", amount=30, reason="moderation"), metadata=ADMIN
    )
    item = await service.CreateCatalogueItem(
        pb.CreateCatalogueItemRequest(name="Pin", price=30, stock=1), metadata=ADMIN
    )
    await service.RedeemItem(
        pb.RedeemItemRequest(item_id=item.item.item_id), metadata=metadata("helper")
    )
    this_week = [(1, "builder", 550, 1), (2, "helper", 30, 0)]
    assert await _board(rewards, pb.LEADERBOARD_PERIOD_WEEK) == this_week
    assert await _board(rewards, pb.LEADERBOARD_PERIOD_MONTH) == this_week
    assert await _board(rewards, pb.LEADERBOARD_PERIOD_ALL_TIME) == [
        *this_week,
        (3, "veteran", 5, 0),
    ]


async def test_the_leaderboard_needs_a_period(rewards: RunningService) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await rewards_stub(rewards).ListLeaderboard(
            pb.ListLeaderboardRequest(), metadata=metadata("anyone")
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {"period"}
