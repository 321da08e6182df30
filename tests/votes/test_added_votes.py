"""The tally fold adds what casts added (services/votes/tallies.py): a cast's
mark carries its vote, the fold adds it to the stored tally without reading
the idea's votes, and anything else (a retract here) makes the fold recount.
The sum of added votes equals the recount, and a cast that a recount already
counted is never added again."""

from __future__ import annotations

import math
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from services.votes import domain, store
from tests.support import Platform, eventually
from tests.votes import feed, recount

# An idea's votes: (weight, tier, seconds after EPOCH).
votes_of_an_idea = st.lists(
    st.tuples(st.integers(1, 1000), st.sampled_from(["newcomer", "core"]), st.floats(0, 9e7)),
    max_size=8,
)


def _recounted(idea_id: str, votes: list[tuple[int, str, float]]) -> domain.Tally:
    """The fold of these votes as the store's grouped recount gives them."""
    return domain.fold(idea_id, recount.tier_groups(votes))


@given(before=votes_of_an_idea, cast=votes_of_an_idea)
def test_adding_cast_votes_to_a_folded_tally_equals_the_recount(
    before: list[tuple[int, str, float]], cast: list[tuple[int, str, float]]
) -> None:
    added = domain.add_votes(
        _recounted("idea", before),
        [domain.added_vote(w, tier, domain.EPOCH + timedelta(seconds=s)) for w, tier, s in cast],
    )
    whole = _recounted("idea", before + cast)
    assert (added.weighted_score, added.voter_count, added.voters_by_tier) == (
        whole.weighted_score,
        whole.voter_count,
        whole.voters_by_tier,
    )
    assert math.isclose(added.trending_score, whole.trending_score, rel_tol=1e-12)


async def test_a_cast_is_added_to_the_stored_tally_and_a_retract_recounts(
    platform: Platform,
) -> None:
    """Proof that casts are added, not recounted: a stored tally put off by
    hand stays off by as much after more casts, and the next retract's
    recount sets it right."""
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"})
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.cast(client, "fan-1", "idea-1")
    await feed.tally_settles(client, "idea-1", score=1, voters=1)
    await svc.runtime.pool.execute(
        "update tallies set weighted_score = weighted_score + 100, voter_count = voter_count + 100"
    )
    await feed.cast(client, "fan-2", "idea-1")
    await feed.tally_settles(client, "idea-1", score=102, voters=102)
    await feed.retract(client, "fan-1", "idea-1")
    await feed.tally_settles(client, "idea-1", score=1, voters=1)


async def test_a_cast_the_recount_counted_is_not_added_again(platform: Platform) -> None:
    """A fold takes a recount mark; a cast commits, with its mark, before the
    fold recounts. The recount sees that cast, so the cast's mark must go with
    it: left for the next fold, the vote would be counted twice."""
    svc = await platform.start("votes", env={"COCREATE_VOTES_CAST_LIMIT": "0"})
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    for fan in ("fan-1", "fan-2"):
        await feed.cast(client, fan, "idea-1")
    await feed.tally_settles(client, "idea-1", score=2, voters=2)

    async with svc.runtime.pool.acquire() as conn, conn.transaction():
        # This test is the folder now: the service's folder waits for the lock.
        async def elected() -> bool:
            return bool(
                await conn.fetchval(
                    "select pg_try_advisory_xact_lock(hashtextextended('votes:tally-folder', 0))"
                )
            )

        assert await eventually(elected, within=10)
        await feed.retract(client, "fan-1", "idea-1")
        marks = await store.take_marks(conn, 100)
        assert marks == {"idea-1": None}
        await feed.cast(client, "fan-3", "idea-1")  # committed between the take and the recount
        groups = await store.recount(conn, ["idea-1"])
        await store.save_tallies(conn, [domain.fold("idea-1", groups["idea-1"])])

    await feed.folded(svc)
    settled = await feed.tally(client, "idea-1")
    active = await svc.runtime.pool.fetchval(
        "select count(*) from votes where idea_id = 'idea-1' and active"
    )
    assert (settled.weighted_score, settled.voter_count) == (active, active) == (2, 2)
