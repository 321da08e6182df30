"""A member's notifications in a browser: GET /notifications leads to the web
app's view, and the mechanism that view relies on — WatchNotifications through
POST /rpc/stream stays open and writes a line as soon as a notification
arrives, against the real votes service."""

from __future__ import annotations

import asyncio
import json

from cocreate.events.v1 import rewards_events_pb2
from google.protobuf import message as pb_message

from services.kit.server import RunningService
from tests import support
from tests.gateway.conftest import GatewayClient, StartGateway, bearer
from tests.support import Platform, eventually

SERVICE = "cocreate.votes.v1.NotificationService"
LIST = f"{SERVICE}.ListNotifications"
MARK = f"{SERVICE}.MarkNotificationsRead"
WATCH = f"{SERVICE}.WatchNotifications"
MEMBER = "m1"


async def emit(votes: RunningService, event: pb_message.Message, version: int) -> None:
    """An event from the rewards service, through an outbox on the votes database."""
    await support.emit(
        votes, event, source="rewards", aggregate_id=MEMBER, aggregate_version=version
    )


def points(amount: int) -> rewards_events_pb2.PointsAwarded:
    return rewards_events_pb2.PointsAwarded(
        entry_id=f"e-{amount}", member_id=MEMBER, amount=amount, reason="an idea shipped"
    )


async def test_the_old_notifications_page_leads_to_the_web_apps_view(
    start_gateway: StartGateway,
) -> None:
    """One notifications page: the web app's (stored, then live), not a second
    one inside the gateway; the old address still gets there."""
    gateway = await start_gateway()
    async with gateway.session.get(gateway.url + "/notifications", allow_redirects=False) as moved:
        assert moved.status == 302
        assert moved.headers["Location"] == "/#/notifications"
    console = await gateway.request("GET", "/console")
    assert 'href="/#/notifications"' in console.body.decode()


async def test_watch_through_the_stream_endpoint_delivers_a_notification_live(
    platform: Platform, start_gateway: StartGateway
) -> None:
    votes = await platform.start("votes")
    # A stream deadline far beyond the waits below: the line comes from the open stream.
    gateway: GatewayClient = await start_gateway(
        targets={"votes": votes.address},
        headers=bearer(MEMBER, "member"),
        stream_deadline_seconds=120,
    )
    await emit(votes, points(1), version=1)

    async def listed() -> list[dict[str, object]] | None:
        # The params the page sends.
        answer = await gateway.call(LIST, {"pageSize": 100, "pageToken": ""})
        found: list[dict[str, object]] = answer["result"]["notifications"]
        return found or None

    (first,) = await eventually(listed)
    assert first["read"] is False
    # Resuming after the newest one it has, as the page does.
    request = {"jsonrpc": "2.0", "method": WATCH, "params": {"afterId": first["id"]}, "id": 1}
    response = await asyncio.wait_for(
        gateway.session.post(
            gateway.url + "/rpc/stream",
            data=json.dumps(request),
            headers={"Content-Type": "application/json", **gateway.headers},
        ),
        10,
    )
    try:
        # The headers came before any notification: the page knows it is watching.
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("application/x-ndjson")
        await emit(votes, points(2), version=2)
        line = json.loads(await asyncio.wait_for(response.content.readline(), 20))
        assert line["id"] == 1 and "error" not in line
        notification = line["result"]["notification"]
        assert notification["memberId"] == MEMBER
        assert notification["kind"] == "NOTIFICATION_KIND_POINTS_AWARDED"
        assert notification["points"] == "2"
        assert int(notification["id"]) > int(str(first["id"]))
        assert not response.content.at_eof()
    finally:
        response.close()
    marked = await gateway.call(MARK, {"all": True})
    assert marked["result"] == {"markedCount": 2, "unreadCount": 0}
