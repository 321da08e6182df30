"""The trending score: the stored value is ln Σ weight · exp((cast_at − EPOCH) / TAU),
so ordering by it orders ideas by their time-decayed score at any moment,
without a periodic sweep."""

from __future__ import annotations

import math
from datetime import timedelta

from cocreate.votes.v1 import votes_service_pb2 as pb
from hypothesis import given
from hypothesis import strategies as st

from services.votes import domain
from tests.support import Platform, metadata
from tests.votes import feed, recount

# An idea's active votes: (weight, seconds after EPOCH).
votes_of_an_idea = st.lists(
    st.tuples(st.integers(1, 5), st.floats(0, 3 * 365 * 86400)), min_size=1, max_size=6
)


def _groups(votes: list[tuple[int, float]]) -> list[domain.TierGroup]:
    """What the store's grouped aggregate gives for these votes, one group per weight."""
    return recount.tier_groups([(w, f"tier-{w}", s) for w, s in votes])


def _decayed(votes: list[tuple[int, float]], at_seconds: float) -> float:
    return sum(w * math.exp(-(at_seconds - s) / domain.TAU_SECONDS) for w, s in votes)


@given(
    first=votes_of_an_idea,
    second=votes_of_an_idea,
    later=st.floats(0, 365 * 86400),
)
def test_ordering_by_the_stored_score_is_ordering_by_the_decayed_score_at_any_moment(
    first: list[tuple[int, float]], second: list[tuple[int, float]], later: float
) -> None:
    stored = [domain.fold(i, _groups(v)).trending_score for i, v in (("a", first), ("b", second))]
    at = max(s for _, s in first + second) + later
    decayed = [_decayed(first, at), _decayed(second, at)]

    if not math.isclose(decayed[0], decayed[1], rel_tol=1e-9):
        assert (stored[0] > stored[1]) == (decayed[0] > decayed[1])
    for score, value in zip(stored, decayed, strict=True):
        # The decayed score is the stored one shifted by the moment, the same for every idea.
        assert math.isclose(
            math.exp(score - at / domain.TAU_SECONDS), value, rel_tol=1e-9, abs_tol=1e-300
        )


async def test_the_service_stores_the_formula_over_the_active_votes(platform: Platform) -> None:
    svc = await platform.start("votes")
    client = feed.votes(svc)
    await feed.submit_ideas(svc, "idea-1")
    await feed.change_tier(svc, "m2", "honorary", 1)
    await feed.wait_for_tier(svc, "m2", 1)
    for member in ("m1", "m2", "m3"):
        await feed.cast(client, member, "idea-1")
    await feed.retract(client, "m3", "idea-1")

    tally = await feed.tally_settles(client, "idea-1", score=6, voters=2)

    answer = await client.ListSupporters(
        pb.ListSupportersRequest(idea_id="idea-1"), metadata=metadata("pm", "pm")
    )
    expected = math.log(
        sum(
            s.weight
            * math.exp(
                (s.cast_time.ToDatetime(tzinfo=domain.EPOCH.tzinfo) - domain.EPOCH)
                / timedelta(seconds=domain.TAU_SECONDS)
            )
            for s in answer.supporters
        )
    )
    assert math.isclose(tally.trending_score, expected, rel_tol=1e-9)
