"""Checks of the fields rewards requests carry, against the bounds in
domain.py: each adds a field violation for a bad value, so that one
INVALID_ARGUMENT names every bad field of a request."""

from __future__ import annotations

import uuid

from services.kit.errors import Violations
from services.kit.validation import check_text
from services.rewards import domain


def check_amount(v: Violations, value: int, field: str) -> None:
    v.check(
        0 < value <= domain.MAX_AMOUNT, field, f"must be a whole number in 1..{domain.MAX_AMOUNT}"
    )


def check_reason(v: Violations, reason: str) -> None:
    if v.check(
        len(reason.strip()) > 0 and len(reason) <= domain.MAX_REASON_LENGTH,
        "reason",
        f"is required, at most {domain.MAX_REASON_LENGTH} characters",
    ):
        check_text(v, reason, "reason")


def parse_item_id(v: Violations, raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        v.add("item_id", "must be a catalogue item id (a UUID)")
        return uuid.UUID(int=0)


def check_rule_id(v: Violations, rule_id: str) -> None:
    if v.check(0 < len(rule_id) <= 64, "rule_id", "is required (for example vote_cast)"):
        check_text(v, rule_id, "rule_id")


def check_name(v: Violations, name: str) -> None:
    if v.check(
        0 < len(name.strip()) <= domain.MAX_NAME_LENGTH,
        "name",
        f"is required, at most {domain.MAX_NAME_LENGTH} characters",
    ):
        check_text(v, name, "name")


def check_description(v: Violations, description: str) -> None:
    if v.check(
        len(description) <= domain.MAX_DESCRIPTION_LENGTH,
        "description",
        f"must be at most {domain.MAX_DESCRIPTION_LENGTH} characters",
    ):
        check_text(v, description, "description")


def check_stock(v: Violations, stock: int) -> None:
    v.check(0 <= stock <= domain.MAX_STOCK, "stock", f"must be in 0..{domain.MAX_STOCK}")


def check_points(v: Violations, points: int) -> None:
    v.check(
        0 <= points <= domain.MAX_AMOUNT,
        "points",
        f"must be a whole number in 0..{domain.MAX_AMOUNT}",
    )


def check_daily_cap(v: Violations, daily_cap: int) -> None:
    v.check(
        0 <= daily_cap <= domain.MAX_DAILY_CAP,
        "daily_cap",
        f"must be in 0..{domain.MAX_DAILY_CAP} (0 = no cap)",
    )
