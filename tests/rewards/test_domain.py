"""The rewards rules without I/O: tiers and the hash chain."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from services.rewards import domain


@pytest.mark.parametrize(
    ("points", "tier", "upcoming"),
    [
        (0, "newcomer", ("member", 100)),
        (99, "newcomer", ("member", 1)),
        (100, "member", ("core", 900)),
        (999, "member", ("core", 1)),
        (1000, "core", ("", 0)),
    ],
)
def test_tiers_follow_lifetime_points(points: int, tier: str, upcoming: tuple[str, int]) -> None:
    tiers = domain.TierThresholds()
    assert tiers.earned(points) == tier
    assert tiers.upcoming(points) == upcoming


def test_tier_thresholds_are_configurable_and_must_grow() -> None:
    tiers = domain.TierThresholds(member=10, core=20)
    assert (tiers.earned(15), tiers.upcoming(15)) == ("member", ("core", 5))
    with pytest.raises(ValueError, match="must grow"):
        domain.TierThresholds(member=50, core=50)


def test_the_higher_of_earned_and_granted_tier_counts() -> None:
    assert domain.effective_tier("core", "member") == "core"
    assert domain.effective_tier("member", "core") == "core"
    assert domain.effective_tier("core", "honorary") == "honorary"
    assert domain.effective_tier("member", None) == "member"


def test_changing_any_hashed_field_changes_the_hash() -> None:
    moment = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    entry = domain.EntryFields(
        entry_id="e1",
        member_id="m1",
        seq=1,
        amount=5,
        balance_after=5,
        kind="earn",
        reason="idea submitted",
        source="event:x",
        rule_id="idea_submitted",
        rule_version=1,
        actor_id="system",
        award_key="idea:i1",
        occurred_at=moment,
        created_at=moment,
    )
    seed = domain.chain_seed("m1", b"seed")
    original = domain.entry_hash(seed, entry)
    assert domain.entry_hash(domain.chain_seed("m1", b"other seed"), entry) != original
    for field in dataclasses.fields(entry):
        value = getattr(entry, field.name)
        changed: object
        if isinstance(value, datetime):
            changed = value.replace(microsecond=1)
        elif isinstance(value, int):
            changed = value + 1
        else:
            changed = value + "!"
        edited = dataclasses.replace(entry, **{field.name: changed})  # type: ignore[arg-type]
        assert domain.entry_hash(seed, edited) != original, field.name
