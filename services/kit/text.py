"""Showing stored text on one line, safely.

Texts are stored exactly as members wrote them, control characters included.
Whatever shows them on one line — a terminal table, a Markdown cell, release
notes — folds whitespace runs (newlines, tabs) into one space and shows every
other control character as an escape, so no stored text can move a cursor,
colour a terminal or break a table.
"""

from __future__ import annotations

import unicodedata


def one_line(text: str) -> str:
    folded = " ".join(text.split())
    return "".join(f"\\x{ord(ch):02x}" if unicodedata.category(ch) == "Cc" else ch for ch in folded)
