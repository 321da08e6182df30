"""Stored text is shown on one line without letting it steer a terminal or a table."""

from __future__ import annotations

from services.kit.text import one_line


def test_whitespace_folds_and_other_control_characters_become_visible() -> None:
    assert one_line("two\nlines\tand  tabs") == "two lines and tabs"
    assert one_line("red \x1b[31malert\x07 del\x7f") == "red \\x1b[31malert\\x07 del\\x7f"
    assert one_line("如何提高电池续航 🔋 <b>'or 1=1") == "如何提高电池续航 🔋 <b>'or 1=1"
