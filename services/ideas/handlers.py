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


async def on_tallies_changed(
    conn: asyncpg.Connection, event: events.Event[votes_events_pb2.TalliesChanged]
) -> None:
    """Apply the tallies of one fold in one statement, each only if it is newer
    than the stored one, so a replayed or overtaken event changes nothing."""
    await _apply(conn, list(event.message.tallies), default_version=0)


async def on_tally_changed(
    conn: asyncpg.Connection, event: events.Event[votes_events_pb2.TallyChanged]
) -> None:
    """One tally per event, as earlier versions of the votes service sent them."""
    await _apply(conn, [event.message], default_version=event.aggregate_version)


async def _apply(
    conn: asyncpg.Connection,
    tallies: list[votes_events_pb2.TallyChanged],
    *,
    default_version: int,
) -> None:
    updates = []
    for tally in tallies:
        try:
            uuid.UUID(tally.idea_id)
        except ValueError:
            _log.warning("tally for a malformed idea id ignored", extra={"idea_id": tally.idea_id})
            continue
        updates.append(
            store.TallyUpdate(
                idea_id=tally.idea_id,
                version=tally.version or default_version,
                weighted_score=tally.weighted_score,
                voter_count=tally.voter_count,
                by_tier=dict(tally.voters_by_tier),
                trending_score=tally.trending_score,
            )
        )
    applied = await store.apply_tallies(conn, updates)
    if applied < len(updates):
        _log.info(
            "tallies not applied (older, or ideas this service does not have)",
            extra={"skipped": len(updates) - applied},
        )


def consumers(_runtime: Any) -> list[InboxConsumer]:
    return [
        InboxConsumer(
            TALLIES_CONSUMER,
            {
                votes_events_pb2.TalliesChanged: on_tallies_changed,
                votes_events_pb2.TallyChanged: on_tally_changed,
            },
        )
    ]
