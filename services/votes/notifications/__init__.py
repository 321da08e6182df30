"""Members' notifications: cocreate.votes.v1.NotificationService.

Placement: the votes service, because it is where the knowledge lives. To
tell "every member who supports an idea" that its status changed, someone
must know the supporters at that moment; the votes service owns the votes (a
supporter is a member with an active vote), and a merge's moved votes are in
its own history. Points and tiers arrive as rewards events, which the votes
service already consumes for tiers. Keeping notifications here needs no new
replica of votes elsewhere and no call between services.

How: one inbox consumer ("votes-notifications") turns IdeaStatusChanged,
IdeasMerged, PointsAwarded and TierChanged into rows of `notifications` (one
per member and fact, so a replayed event tells nobody twice) and sends a
Postgres NOTIFY at commit naming the members. Each process keeps one LISTEN
connection (NotificationHub) that wakes the WatchNotifications streams of
those members; each stream then reads what is new from the table, and also
looks every few seconds (COCREATE_VOTES_NOTIFICATIONS_CATCH_UP_SECONDS,
default 5), so a missed NOTIFY only delays a notification.

Wired in services/votes/service.py: the service names, the servicer, the
consumer and the hub's background loop.
"""

from __future__ import annotations

import grpc
from cocreate.votes.v1 import notification_service_pb2, notification_service_pb2_grpc

from services.kit.inbox import InboxConsumer
from services.kit.server import BackgroundLoop, Runtime
from services.votes.notifications import handlers
from services.votes.notifications.api import NotificationServicer
from services.votes.notifications.live import NotificationHub

NOTIFICATION_SERVICE_NAMES = [
    notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"].full_name
]


def notification_consumers(runtime: Runtime) -> list[InboxConsumer]:
    """The consumer that writes notifications."""
    return [handlers.consumer()]


def register_notification_service(
    server: grpc.aio.Server, runtime: Runtime
) -> list[BackgroundLoop]:
    """The servicer, and the LISTEN loop of the live fan-out it reads from
    (one per process)."""
    hub = NotificationHub(runtime.config.database_url)
    notification_service_pb2_grpc.add_NotificationServiceServicer_to_server(
        NotificationServicer(runtime, hub), server
    )
    return [hub.run]


__all__ = [
    "NOTIFICATION_SERVICE_NAMES",
    "notification_consumers",
    "register_notification_service",
]
