"""What the ideas service does with other services' events: it keeps each
idea's tally (from the votes service) for sorting, filtering and export."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from cocreate.events.v1 import votes_events_pb2

from services.ideas import store
from services.kit import events, log
from services.kit.inbox import InboxConsumer

TALLIES_CONSUMER = "ideas-tallies"

_log = log.get("ideas.handlers")


async def on_tally_changed(
    conn: asyncpg.Connection, event: events.Event[votes_events_pb2.TallyChanged]
) -> None:
    """Apply the tally only if it is newer than the stored one, so a replayed
    or overtaken event changes nothing."""
    tally = event.message
    try:
        uuid.UUID(tally.idea_id)
    except ValueError:
        _log.warning("tally for a malformed idea id ignored", extra={"idea_id": tally.idea_id})
        return
    applied = await store.apply_tally(
        conn,
        tally.idea_id,
        version=tally.version or event.aggregate_version,
        weighted_score=tally.weighted_score,
        voter_count=tally.voter_count,
        by_tier=dict(tally.voters_by_tier),
        trending_score=tally.trending_score,
    )
    if not applied:
        _log.info(
            "tally not applied (older, or an idea this service does not have)",
            extra={"idea_id": tally.idea_id, "version": tally.version},
        )


def consumers(_runtime: Any) -> list[InboxConsumer]:
    return [InboxConsumer(TALLIES_CONSUMER, {votes_events_pb2.TallyChanged: on_tally_changed})]
