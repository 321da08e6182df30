"""The release rules without I/O: ISO week names and dates, and what a cut
does with each planned idea."""

from __future__ import annotations

from datetime import date

from services.ideas import domain
from services.ideas.releases import rules
from services.kit.errors import Violations


def test_iso_weeks_map_to_monday_and_sunday_and_roll_over_the_year() -> None:
    assert rules.iso_week("2026-W48") == (date(2026, 11, 23), date(2026, 11, 29))
    assert rules.iso_week("2026-W53") == (date(2026, 12, 28), date(2027, 1, 3))
    assert rules.iso_week("2025-W53") is None  # 2025 has 52 weeks
    assert rules.iso_week("Winter polish") is None
    assert rules.next_week_name(date(2026, 12, 28), date(2027, 1, 3), "2026-W53") == "2027-W01"
    assert rules.next_week_name(date(2026, 12, 1), date(2026, 12, 14), "custom") == "2026-W51"


def test_iteration_dates_default_to_the_week_and_must_be_ordered() -> None:
    v = Violations()
    assert rules.iteration_dates(v, "2026-W48", "", "") == (date(2026, 11, 23), date(2026, 11, 29))
    assert rules.iteration_dates(v, "custom", "2026-12-10", "2026-12-01") is None
    assert [i.field for i in v.items] == ["end_date"]


def test_a_cut_ships_done_work_drops_closed_ideas_and_rolls_the_rest_over() -> None:
    plan = rules.plan_cut(
        [
            ("planned-done", domain.PLANNED, True),
            ("in-progress-done", domain.IN_PROGRESS, True),
            ("planned-not-done", domain.PLANNED, False),
            ("shipped-by-hand", domain.SHIPPED, False),
            ("declined", domain.DECLINED, True),
            ("merged", domain.MERGED, False),
        ]
    )
    assert plan.ship == ["planned-done", "in-progress-done"]
    assert plan.already_shipped == ["shipped-by-hand"]
    assert plan.roll_over == ["planned-not-done"]
    assert plan.drop == ["declined", "merged"]
