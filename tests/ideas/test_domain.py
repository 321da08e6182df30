"""The pure rules: the workflow (including what a release cut may do), text
cleaning and the edit permission."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.ideas import domain
from services.kit.auth import Caller, Role
from services.kit.errors import FailedPrecondition, PermissionDenied, Violations


def test_the_workflow_moves_forward_one_step_or_to_declined() -> None:
    chain = [domain.OPEN, domain.UNDER_REVIEW, domain.PLANNED, domain.IN_PROGRESS, domain.SHIPPED]
    for current, following in itertools.pairwise(chain):
        assert domain.allowed_next_statuses(current, Role.PM) == [following, domain.DECLINED]
    for final in (domain.SHIPPED, domain.DECLINED, domain.MERGED):
        assert domain.allowed_next_statuses(final, Role.ADMIN) == []


def test_a_release_cut_may_ship_a_planned_idea_but_a_pm_may_not() -> None:
    domain.check_transition(domain.PLANNED, domain.SHIPPED, Role.SERVICE)
    with pytest.raises(FailedPrecondition) as caught:
        domain.check_transition(domain.PLANNED, domain.SHIPPED, Role.PM)
    assert caught.value.metadata["allowed_next_statuses"] == (
        "IDEA_STATUS_IN_PROGRESS,IDEA_STATUS_DECLINED"
    )


def test_text_is_trimmed_but_otherwise_kept_exactly_and_only_nul_is_refused() -> None:
    v = Violations()
    assert domain.clean_title(v, "  Ünïcödé <b>x</b> 'or 1=1  ") == "Ünïcödé <b>x</b> 'or 1=1"
    assert domain.clean_body(v, "a\r\n\tb") == "a\r\n\tb"
    assert domain.clean_tags(v, [" Dark  Mode ", "dark-mode", "界面"]) == ["dark-mode", "界面"]
    assert domain.clean_body(v, "bell\x07 esc\x1b[31m del\x7f") == "bell\x07 esc\x1b[31m del\x7f"
    assert domain.clean_title(v, "esc\x1b[31m red") == "esc\x1b[31m red"
    assert domain.clean_title(v, "two\nlines") == "two\nlines"
    assert v.items == []
    domain.clean_title(v, "nul\x00 title")
    domain.clean_body(v, "nul\x00 char")
    assert [i.field for i in v.items] == ["title", "body"]


def test_authors_edit_only_open_ideas_within_the_window() -> None:
    now = datetime.now(UTC)
    window = timedelta(minutes=10)
    author = Caller("alice", Role.MEMBER)
    fresh = domain.EditableIdea("alice", domain.OPEN, now - timedelta(minutes=1))
    domain.check_can_edit(author, fresh, now, window)
    with pytest.raises(PermissionDenied):
        domain.check_can_edit(Caller("bob", Role.MEMBER), fresh, now, window)
    old = domain.EditableIdea("alice", domain.OPEN, now - timedelta(minutes=11))
    with pytest.raises(FailedPrecondition):
        domain.check_can_edit(author, old, now, window)
    domain.check_can_edit(Caller("pm", Role.PM), old, now, window)
    merged = domain.EditableIdea("alice", domain.MERGED, now)
    with pytest.raises(FailedPrecondition):
        domain.check_can_edit(Caller("pm", Role.PM), merged, now, window)
