"""The rewards rules, without I/O: tiers, the ledger's hash chain, bounds.

Decisions the issue leaves open:
- "Accepted" is reaching UNDER_REVIEW, PLANNED, IN_PROGRESS or SHIPPED; the
  author is paid idea_accepted once per idea, whichever comes first.
- Vote points are paid once per (member, idea): retracting and casting again
  earns nothing more.
- Lifetime points are the sum of every entry except redemptions, so spending
  never lowers a tier while corrections (deductions, spam reversals) may.
- A spam reversal takes back the submission points actually paid, but never
  more than the balance (a balance is never negative).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from cocreate.ideas.v1 import idea_status_pb2

NEWCOMER_TIER = "newcomer"
MEMBER_TIER = "member"
CORE_TIER = "core"
# Only an admin grants it; it ranks above every earned tier.
HONORARY_TIER = "honorary"
TIER_RANK = {
    name: rank for rank, name in enumerate([NEWCOMER_TIER, MEMBER_TIER, CORE_TIER, HONORARY_TIER])
}
# An admin may grant any tier above newcomer.
GRANTABLE_TIERS = frozenset(TIER_RANK) - {NEWCOMER_TIER}

MAX_AMOUNT = 1_000_000
MAX_STOCK = 1_000_000_000
MAX_DAILY_CAP = 10_000
MAX_REASON_LENGTH = 500
MAX_NAME_LENGTH = 120
MAX_DESCRIPTION_LENGTH = 2000

SYSTEM_ACTOR = "system"

RULE_IDEA_SUBMITTED = "idea_submitted"
RULE_IDEA_ACCEPTED = "idea_accepted"
RULE_IDEA_SHIPPED_AUTHOR = "idea_shipped_author"
RULE_IDEA_SHIPPED_SUPPORTER = "idea_shipped_supporter"
RULE_VOTE_CAST = "vote_cast"

KIND_EARN = "earn"
KIND_REVERSAL = "reversal"
KIND_GRANT = "grant"
KIND_DEDUCTION = "deduction"
KIND_REDEMPTION = "redemption"

ACCEPTED_STATUSES = frozenset(
    {
        idea_status_pb2.IDEA_STATUS_UNDER_REVIEW,
        idea_status_pb2.IDEA_STATUS_PLANNED,
        idea_status_pb2.IDEA_STATUS_IN_PROGRESS,
        idea_status_pb2.IDEA_STATUS_SHIPPED,
    }
)


@dataclass(frozen=True)
class TierThresholds:
    """The lifetime points each earned tier starts at (newcomer starts at 0)."""

    member: int = 100
    core: int = 1000

    def __post_init__(self) -> None:
        if not 0 < self.member < self.core:
            raise ValueError(
                f"tier thresholds must grow: 0 < member ({self.member}) < core ({self.core})"
            )

    @property
    def levels(self) -> tuple[tuple[str, int], ...]:
        return ((NEWCOMER_TIER, 0), (MEMBER_TIER, self.member), (CORE_TIER, self.core))

    def earned(self, lifetime_points: int) -> str:
        reached = NEWCOMER_TIER
        for name, threshold in self.levels:
            if lifetime_points >= threshold:
                reached = name
        return reached

    def upcoming(self, lifetime_points: int) -> tuple[str, int]:
        """The next earned tier and the points still missing; ("", 0) at the top."""
        for name, threshold in self.levels:
            if lifetime_points < threshold:
                return name, threshold - lifetime_points
        return "", 0


def effective_tier(earned: str, granted: str | None) -> str:
    if granted and TIER_RANK.get(granted, -1) > TIER_RANK.get(earned, 0):
        return granted
    return earned


def counts_as_lifetime(kind: str) -> bool:
    return kind != KIND_REDEMPTION


def day_of(moment: datetime) -> datetime:
    """The start (in UTC) of the day a rule's daily cap counts `moment` in."""
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def chain_seed(member_id: str, seed: bytes) -> bytes:
    """The 'previous hash' of an account's first entry."""
    return hashlib.sha256(
        b"cocreate-rewards-ledger\x1f" + member_id.encode() + b"\x1f" + seed
    ).digest()


@dataclass(frozen=True)
class EntryFields:
    """The fields of a ledger entry the hash covers."""

    entry_id: str
    member_id: str
    seq: int
    amount: int
    balance_after: int
    kind: str
    reason: str
    source: str
    rule_id: str
    rule_version: int
    actor_id: str
    award_key: str
    occurred_at: datetime
    created_at: datetime

    def canonical(self) -> bytes:
        return json.dumps(
            [
                self.entry_id,
                self.member_id,
                self.seq,
                self.amount,
                self.balance_after,
                self.kind,
                self.reason,
                self.source,
                self.rule_id,
                self.rule_version,
                self.actor_id,
                self.award_key,
                _instant(self.occurred_at),
                _instant(self.created_at),
            ],
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()


def entry_hash(previous: bytes, fields: EntryFields) -> bytes:
    return hashlib.sha256(previous + fields.canonical()).digest()


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")
