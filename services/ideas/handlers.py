"""What the ideas service does with other services' events: it keeps each
idea's tally (from the votes service) for sorting, filtering and export."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from cocreate.events.v1 import votes_events_pb2

from services.ideas import store
from services.kit import events, log
from services.kit.inbox import Batched, InboxConsumer

TALLIES_CONSUMER = "ideas-tallies"

_log = log.get("ideas.handlers")


async def on_tallies_changed(
    conn: asyncpg.Connection, received: list[events.Event[votes_events_pb2.TalliesChanged]]
) -> None:
    """Apply the tallies of a run of folds in one statement, each only if it
    is newer than the stored one, so a replayed or overtaken event changes
    nothing. One statement for the run also takes its row locks in one id
    order, which a merge or a release cut running beside it shares."""
    await _apply(
        conn, [tally for event in received for tally in event.message.tallies], default_version=0
    )


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
    newest: dict[str, store.TallyUpdate] = {}
    for tally in tallies:
        try:
            uuid.UUID(tally.idea_id)
        except ValueError:
            _log.warning("tally for a malformed idea id ignored", extra={"idea_id": tally.idea_id})
            continue
        update = store.TallyUpdate(
            idea_id=tally.idea_id,
            version=tally.version or default_version,
            weighted_score=tally.weighted_score,
            voter_count=tally.voter_count,
            by_tier=dict(tally.voters_by_tier),
            trending_score=tally.trending_score,
        )
        # An idea twice in a run: the newest tally only (an update joined to
        # two rows for one idea would apply either of them).
        seen = newest.get(update.idea_id)
        if seen is None or seen.version < update.version:
            newest[update.idea_id] = update
    updates = list(newest.values())
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
                votes_events_pb2.TalliesChanged: Batched(on_tallies_changed),
                votes_events_pb2.TallyChanged: on_tally_changed,
            },
        )
    ]
