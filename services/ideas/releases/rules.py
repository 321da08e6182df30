"""The rules of iterations and release cuts, without I/O: names and dates,
states, which ideas may be planned, and what a cut does with each idea."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import IntEnum

from services.ideas import domain
from services.kit.errors import FailedPrecondition, Violations

NAME_MAX = 80
VERSION_MAX = 64

_ISO_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class State(IntEnum):
    """The cocreate.ideas.v1.IterationState numbers."""

    PLANNING = 1
    FROZEN = 2
    RELEASED = 3


class Outcome(IntEnum):
    """The cocreate.ideas.v1.IterationIdeaOutcome numbers."""

    PLANNED = 1
    SHIPPED = 2
    ROLLED_OVER = 3
    DROPPED = 4


# Ideas that may be planned, and the statuses a cut ships from.
PLANNABLE = frozenset({domain.OPEN, domain.UNDER_REVIEW, domain.PLANNED, domain.IN_PROGRESS})
SHIPPABLE = frozenset({domain.PLANNED, domain.IN_PROGRESS})


def iso_week(name: str) -> tuple[date, date] | None:
    """Monday and Sunday of an ISO week name like 2026-W48; None for another name."""
    match = _ISO_WEEK.match(name)
    if match is None:
        return None
    try:
        monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        return None
    return monday, monday + timedelta(days=6)


def week_name(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def next_week_name(start: date, end: date, name: str) -> str:
    """The ISO week after an iteration: the next week of an ISO-week
    iteration, else the week of the day after it ends."""
    week = iso_week(name)
    if week is not None:
        return week_name(week[0] + timedelta(days=7))
    return week_name(end + timedelta(days=1))


def is_week_name_like(name: str) -> bool:
    return bool(re.match(r"^\d{4}-W\d+$", name))


def parse_date(v: Violations, raw: str, field: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        v.add(field, "must be an ISO date (YYYY-MM-DD)")
        return None


def iteration_dates(
    v: Violations, name: str, raw_start: str, raw_end: str
) -> tuple[date, date] | None:
    """The iteration's dates: given, or those of its ISO week."""
    start = parse_date(v, raw_start, "start_date")
    end = parse_date(v, raw_end, "end_date")
    week = iso_week(name)
    if name and week is None and is_week_name_like(name):
        v.add("name", "is not an ISO week (YYYY-Www with a week that exists that year)")
        return None
    if week is not None:
        start = start or week[0]
        end = end or week[1]
    elif name and (start is None or end is None):
        if not raw_start:
            v.add("start_date", "is required for an iteration that is not named by ISO week")
        if not raw_end:
            v.add("end_date", "is required for an iteration that is not named by ISO week")
        return None
    if start is None or end is None:
        return None
    if end < start:
        v.add("end_date", "must be on or after start_date")
        return None
    return start, end


def clean_text(v: Violations, raw: str, field: str, *, maximum: int) -> str:
    """A required text: trimmed, 1..maximum characters, kept exactly (no NUL)."""
    return domain.clean_name(v, raw, field, maximum=maximum, required=True)


def clean_version(v: Violations, raw: str) -> str:
    return clean_text(v, raw, "version", maximum=VERSION_MAX)


def state_name(state: int) -> str:
    return State(state).name


def require_state(state: int, allowed: tuple[State, ...], action: str, iteration_id: str) -> None:
    if state in allowed:
        return
    raise FailedPrecondition(
        f"cannot {action}: the iteration is {state_name(state)}",
        reason=f"ITERATION_{state_name(state)}",
        metadata={
            "iteration_id": iteration_id,
            "state": state_name(state),
            "allowed_states": ",".join(s.name for s in allowed),
        },
    )


@dataclass(frozen=True)
class CutPlan:
    """What a cut does with the open ideas of an iteration."""

    ship: list[str]
    # Shipped by hand (ChangeIdeaStatus) while planned: in the release, no new change.
    already_shipped: list[str]
    roll_over: list[str]
    drop: list[str]


def plan_cut(items: list[tuple[str, int, bool]]) -> CutPlan:
    """`items` are (idea id, status, done). Done ideas that are planned or in
    progress ship; one already shipped by hand is in the release as it is;
    declined and merged ones are dropped; every other idea rolls over."""
    ship: list[str] = []
    already: list[str] = []
    roll: list[str] = []
    drop: list[str] = []
    for idea_id, status, done in items:
        if status == domain.SHIPPED:
            already.append(idea_id)
        elif domain.is_final(status):
            drop.append(idea_id)
        elif done and status in SHIPPABLE:
            ship.append(idea_id)
        else:
            roll.append(idea_id)
    return CutPlan(ship=ship, already_shipped=already, roll_over=roll, drop=drop)
