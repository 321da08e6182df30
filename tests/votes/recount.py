"""What the store's grouped recount (store.recount) gives for an idea's votes,
computed in Python: the tests compare the domain's folds with it."""

from __future__ import annotations

import math
from collections.abc import Sequence

from services.votes import domain


def tier_groups(votes: Sequence[tuple[int, str, float]]) -> list[domain.TierGroup]:
    """The per-tier sums of votes given as (weight, tier, seconds after EPOCH)."""
    if not votes:
        return []
    exponents = [(w, tier, s / domain.TAU_SECONDS) for w, tier, s in votes]
    top = max(x for _, _, x in exponents)
    return [
        domain.TierGroup(
            tier=tier,
            voters=sum(1 for _, t, _ in exponents if t == tier),
            score=sum(w for w, t, _ in exponents if t == tier),
            top=top,
            scaled=sum(w * math.exp(x - top) for w, t, x in exponents if t == tier),
        )
        for tier in sorted({t for _, t, _ in exponents})
    ]
