"""Hot idea: a concurrent burst of 2,000 members voting on one idea ends with
the exact tally; its time is printed as a ratio to the same burst spread
over 2,000 ideas (reported, not asserted)."""

from __future__ import annotations

from bench.bench_hot_idea import MEMBERS, compare
from tests.support import Platform


async def test_a_burst_of_2000_votes_on_one_idea_ends_with_the_exact_tally(
    platform: Platform,
) -> None:
    svc = await platform.start("votes")

    result = await compare(svc, MEMBERS)

    print(result.report())
