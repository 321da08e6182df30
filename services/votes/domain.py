"""The rules of voting: which ideas take votes, weights by tier, tallies and
the trending score. No I/O here.

Trending score
--------------
Each active vote contributes ``weight · exp((cast_at − EPOCH) / TAU)`` and the
stored score is the natural log of the sum of the contributions:

    trending = ln Σ weight_i · exp((cast_at_i − EPOCH) / TAU)

The time-decayed score of an idea at a moment ``t`` is
``Σ weight_i · exp(−(t − cast_at_i) / TAU) = exp(trending − (t − EPOCH) / TAU)``,
and the factor ``exp(−(t − EPOCH) / TAU)`` is the same for every idea. So
ordering ideas by the stored value orders them by their decayed score at any
moment, and nothing has to be recomputed as time passes: no periodic sweep.
A vote cast TAU later counts e times more than an equal one cast now. Keeping
the sum in log space (computed with the max shifted out) never overflows. An
idea without active votes has trending 0; any vote after EPOCH makes it > 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from cocreate.ideas.v1 import idea_status_pb2

from services.kit.errors import Violations

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
TAU_SECONDS = 7 * 24 * 3600.0

MAX_TIER_LENGTH = 32
MAX_WEIGHT = 1000
MAX_NOTE_LENGTH = 500
MAX_BATCH = 500

DEFAULT_WEIGHTS: dict[str, int] = {"newcomer": 1, "member": 2, "core": 3, "honorary": 5}

CLOSED_STATUSES = frozenset(
    {
        idea_status_pb2.IDEA_STATUS_SHIPPED,
        idea_status_pb2.IDEA_STATUS_DECLINED,
        idea_status_pb2.IDEA_STATUS_MERGED,
    }
)


def is_open(status: int) -> bool:
    """Shipped, declined and merged ideas are closed; every other status takes votes."""
    return status not in CLOSED_STATUSES


# History actions and causes: the numbers of votes_service.proto's enums.
ACTION_CAST = 1
ACTION_RETRACT = 2
ACTION_REWEIGHT = 3

CAUSE_MEMBER = 1
CAUSE_MERGE = 2
CAUSE_VOID = 3
CAUSE_TIER_CHANGE = 4
CAUSE_POLICY_CHANGE = 5


@dataclass(frozen=True)
class WeightPolicy:
    weights: Mapping[str, int]

    @property
    def lowest_tier(self) -> str:
        """The tier an unknown member counts at: the lowest weight (then the name)."""
        return min(self.weights.items(), key=lambda item: (item[1], item[0]))[0]

    def weight_of(self, tier: str) -> int:
        """A tier the policy does not name counts like the lowest tier."""
        return self.weights.get(tier, self.weights[self.lowest_tier])

    def tier_of(self, stored_tier: str | None) -> str:
        """The tier a member votes with: their stored tier, or the lowest one."""
        return stored_tier if stored_tier else self.lowest_tier


def check_note(
    violations: Violations, field_name: str, value: str, *, required: bool = False
) -> None:
    if required and not value.strip():
        violations.add(field_name, "is required")
    elif len(value) > MAX_NOTE_LENGTH:
        violations.add(field_name, f"must be at most {MAX_NOTE_LENGTH} characters")


def check_policy(violations: Violations, weights: Mapping[str, int]) -> None:
    if not weights:
        violations.add("weights", "must name at least one tier")
    for tier, weight in weights.items():
        key = f"weights[{tier!r}]"
        if (
            not tier
            or len(tier) > MAX_TIER_LENGTH
            or not tier.isprintable()
            or tier != tier.strip()
        ):
            violations.add(key, f"tier names are 1..{MAX_TIER_LENGTH} printable characters")
        if not 1 <= weight <= MAX_WEIGHT:
            violations.add(key, f"weight must be 1..{MAX_WEIGHT}")


@dataclass
class Tally:
    idea_id: str
    weighted_score: int = 0
    voter_count: int = 0
    voters_by_tier: dict[str, int] = field(default_factory=dict)
    trending_score: float = 0.0


@dataclass(frozen=True)
class TierGroup:
    """The active votes of one idea in one tier, as the store sums them:
    `top` is the idea's largest trending exponent and `scaled` is
    Σ weight · exp(exponent − top) over the group."""

    tier: str
    voters: int
    score: int
    top: float
    scaled: float


@dataclass(frozen=True)
class AddedVote:
    """What a cast adds to its idea's tally: its weight, in its tier, and its
    trending term ln(weight) + (cast_at − EPOCH) / TAU."""

    weight: int
    tier: str
    trend: float


def added_vote(weight: int, tier: str, cast_at: datetime) -> AddedVote:
    exponent = (cast_at - EPOCH).total_seconds() / TAU_SECONDS
    return AddedVote(weight, tier, math.log(weight) + exponent)


def add_votes(stored: Tally, added: Iterable[AddedVote]) -> Tally:
    """The tally after votes were added to `stored` (an idea's tally as the
    last fold left it): the sums add exactly, and the trending sum adds in log
    space (the largest term shifted out, as the recount does)."""
    tally = replace(stored, voters_by_tier=dict(stored.voters_by_tier))
    terms = [tally.trending_score] if tally.voter_count > 0 else []
    for vote in added:
        tally.weighted_score += vote.weight
        tally.voter_count += 1
        tally.voters_by_tier[vote.tier] = tally.voters_by_tier.get(vote.tier, 0) + 1
        terms.append(vote.trend)
    if terms:
        top = max(terms)
        tally.trending_score = top + math.log(math.fsum(math.exp(t - top) for t in terms))
    return tally


def fold(idea_id: str, groups: Iterable[TierGroup]) -> Tally:
    """The tally of an idea from its per-tier sums."""
    tally = Tally(idea_id)
    top: float | None = None
    scaled = 0.0
    for group in groups:
        tally.weighted_score += group.score
        tally.voter_count += group.voters
        tally.voters_by_tier[group.tier] = group.voters
        top = group.top
        scaled += group.scaled
    if top is not None and scaled > 0:
        tally.trending_score = top + math.log(scaled)
    return tally
