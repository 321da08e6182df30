"""The read model applies a run of tally events in one statement: its rows
(idea_tallies) are locked in id order, so two runs cannot deadlock; the
ideas' own rows are not touched, so a merge or a release cut holding an idea
does not hold up a tally; and an idea twice in a run ends at its newest tally."""

from __future__ import annotations

import asyncio
import uuid

from cocreate.events.v1 import envelope_pb2, votes_events_pb2

from services.ideas import handlers, store
from services.kit import events
from tests.ideas.helpers import start_ideas
from tests.support import Platform, eventually


def _tally(idea_id: str, version: int, score: int) -> store.TallyUpdate:
    return store.TallyUpdate(
        idea_id=idea_id,
        version=version,
        weighted_score=score,
        voter_count=score,
        by_tier={},
        trending_score=0.0,
    )


async def test_a_tally_batch_locks_its_ideas_in_id_order(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    first, second = [(await ideas.submit(product.id, f"Idea {n}")).id for n in (1, 2)]
    lower, higher = sorted([first, second], key=uuid.UUID)
    pool = ideas.service.runtime.pool
    # The lower idea's row rewritten, so a scan of the table meets the higher first.
    await pool.execute(
        "update idea_tallies set tally_version = tally_version where idea_id = $1",
        uuid.UUID(lower),
    )

    async with pool.acquire() as holder, holder.transaction():
        await holder.execute(
            "select 1 from idea_tallies where idea_id = $1 for update", uuid.UUID(lower)
        )

        async def apply_higher_first() -> None:
            async with pool.acquire() as conn, conn.transaction():
                await store.apply_tallies(conn, [_tally(higher, 1, 5), _tally(lower, 1, 7)])

        applying = asyncio.create_task(apply_higher_first())

        async def waiting_for_a_row_lock() -> bool:
            waiting: int = await pool.fetchval(
                "select count(*) from pg_stat_activity "
                "where datname = current_database() and wait_event_type = 'Lock'"
            )
            return waiting == 1

        await eventually(waiting_for_a_row_lock)
        # Blocked on the lower id, the batch holds nothing above it: another
        # batch that holds the lower idea can still lock the higher one.
        async with pool.acquire() as other, other.transaction():
            locked = await other.fetchval(
                "select count(*) from "
                "(select 1 from idea_tallies where idea_id = $1 for update nowait) x",
                uuid.UUID(higher),
            )
        assert locked == 1
    await asyncio.wait_for(applying, timeout=10)
    assert ((await ideas.get(lower)).weighted_score, (await ideas.get(higher)).weighted_score) == (
        7,
        5,
    )


async def test_a_tally_batch_does_not_wait_for_an_idea_held_by_a_merge(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = (await ideas.submit(product.id, "Held idea")).id
    pool = ideas.service.runtime.pool
    async with pool.acquire() as holder, holder.transaction():
        # What a merge, an edit or a release cut takes on the idea's own row.
        await holder.execute("select 1 from ideas where id = $1 for update", uuid.UUID(idea))
        async with pool.acquire() as conn, conn.transaction():
            applied = await asyncio.wait_for(store.apply_tallies(conn, [_tally(idea, 1, 9)]), 10)
    assert applied == 1
    assert (await ideas.get(idea)).weighted_score == 9


async def test_an_idea_twice_in_a_run_ends_at_its_newest_tally(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = (await ideas.submit(product.id)).id

    def fold(version: int, score: int) -> events.Event[votes_events_pb2.TalliesChanged]:
        message = votes_events_pb2.TalliesChanged(
            tallies=[
                votes_events_pb2.TallyChanged(
                    idea_id=idea, version=version, weighted_score=score, voter_count=score
                )
            ]
        )
        return events.Event(envelope=envelope_pb2.Envelope(), message=message, subject="")

    async with ideas.service.runtime.pool.acquire() as conn, conn.transaction():
        await handlers.on_tallies_changed(conn, [fold(3, 30), fold(2, 20), fold(1, 10)])
    assert (await ideas.get(idea)).weighted_score == 30
