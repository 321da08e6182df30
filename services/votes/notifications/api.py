"""The gRPC servicer of cocreate.votes.v1.NotificationService: a member's own
notifications, listed, marked read, and watched live."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import asyncpg
import grpc
from cocreate.votes.v1 import notification_service_pb2 as pb
from cocreate.votes.v1 import notification_service_pb2_grpc as pb_grpc

from services.kit import idempotency, worker
from services.kit.auth import current_caller
from services.kit.errors import Violations
from services.kit.events import timestamp
from services.kit.server import Runtime
from services.votes.notifications import store
from services.votes.notifications.live import NotificationHub

CATCH_UP_SETTING = "COCREATE_VOTES_NOTIFICATIONS_CATCH_UP_SECONDS"
MAX_MARK_IDS = 500
# How far back a watcher looks for notifications whose transaction committed
# after one with a higher id was already sent.
RECENT_SECONDS = 300.0
WATCH_BATCH = 200


def notification_message(row: asyncpg.Record) -> pb.Notification:
    return pb.Notification(
        id=row["id"],
        member_id=row["member_id"],
        kind=row["kind"],
        text=row["text"],
        idea_id=row["idea_id"],
        new_status=row["new_status"],
        release_id=row["release_id"],
        target_idea_id=row["target_idea_id"],
        points=row["points"],
        tier=row["tier"],
        read=row["read"],
        create_time=timestamp(row["created_at"]),
    )


def _forget_old(sent: dict[int, datetime]) -> None:
    if not sent:
        return
    cutoff = max(sent.values()) - timedelta(seconds=RECENT_SECONDS + 60)
    for old in [i for i, at in sent.items() if at < cutoff]:
        del sent[old]


class NotificationServicer(pb_grpc.NotificationServiceServicer):
    def __init__(self, runtime: Runtime, hub: NotificationHub) -> None:
        self._rt = runtime
        self._mutations = idempotency.Mutations(
            runtime.pool, pb.DESCRIPTOR.services_by_name["NotificationService"]
        )
        self._hub = hub
        self._catch_up = runtime.config.get_float(CATCH_UP_SETTING, 5.0)

    async def ListNotifications(
        self, request: pb.ListNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListNotificationsResponse:
        caller = current_caller()
        page = self._rt.page_tokens.page(request)
        position = (bool(page.after["read"]), int(page.after["id"])) if page.after else None
        async with self._rt.pool.acquire() as conn:
            rows = await store.page(
                conn,
                caller.member_id,
                unread_only=request.unread_only,
                after=position,
                limit=page.fetch,
            )
            unread = await store.unread_count(conn, caller.member_id)
        return pb.ListNotificationsResponse(
            notifications=[notification_message(r) for r in page.items(rows)],
            unread_count=unread,
            next_page_token=page.next_token(
                rows, lambda last: {"read": last["read"], "id": last["id"]}
            ),
        )

    async def MarkNotificationsRead(
        self, request: pb.MarkNotificationsReadRequest, context: grpc.aio.ServicerContext
    ) -> pb.MarkNotificationsReadResponse:
        caller = current_caller()
        v = Violations()
        v.check(bool(request.ids) != request.all, "ids", "give some ids, or all, but not both")
        v.check(len(request.ids) <= MAX_MARK_IDS, "ids", f"at most {MAX_MARK_IDS} at a time")
        v.check(all(i > 0 for i in request.ids), "ids", "must be positive")
        v.raise_if_any()

        async def work(conn: asyncpg.Connection) -> pb.MarkNotificationsReadResponse:
            marked = await store.mark_read(
                conn, caller.member_id, None if request.all else list(request.ids)
            )
            return pb.MarkNotificationsReadResponse(
                marked_count=marked, unread_count=await store.unread_count(conn, caller.member_id)
            )

        return await self._mutations.run(caller.member_id, request, work)

    async def WatchNotifications(
        self, request: pb.WatchNotificationsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchNotificationsResponse]:
        caller = current_caller()
        v = Violations()
        v.check(request.after_id >= 0, "after_id", "must not be negative")
        v.raise_if_any()
        member_id = caller.member_id
        wake = self._hub.subscribe(member_id)
        try:
            pool = self._rt.pool
            # Sent ids and their time, kept while they are recent enough to be
            # found again by the catch-up query.
            sent: dict[int, datetime] = {}
            # Up to after_id (by default the newest stored) counts as seen.
            last_id = request.after_id or await store.latest_id(pool, member_id)
            for row in await store.recent(pool, member_id, last_id, recent_seconds=RECENT_SECONDS):
                sent[row["id"]] = row["created_at"]
            # Headers now, not with the first notification: the client knows it is
            # watching, and (sent after the starting point was taken) that a list it
            # reads from now on holds everything this stream will not send.
            await context.send_initial_metadata(())
            # Ends when the service shuts down; the client resumes with after_id.
            while not self._rt.stopping.is_set():
                wake.clear()
                rows = await store.pending(
                    pool,
                    member_id,
                    last_id,
                    sent=list(sent),
                    recent_seconds=RECENT_SECONDS,
                    limit=WATCH_BATCH,
                )
                for row in rows:
                    sent[row["id"]] = row["created_at"]
                    last_id = max(last_id, row["id"])
                    yield pb.WatchNotificationsResponse(notification=notification_message(row))
                _forget_old(sent)
                if len(rows) >= WATCH_BATCH:
                    continue  # more are waiting
                await worker.wait_any(wake, self._rt.stopping, seconds=self._catch_up)
        finally:
            self._hub.unsubscribe(member_id, wake)
