"""Tables for people, JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from services.kit.text import one_line

MAX_CELL = 60

Column = tuple[str, str]  # (header, dotted path into a row in protobuf's JSON mapping)


def pick(row: Any, path: str) -> Any:
    value = row
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={cell(v)}" for k, v in value.items())
    return str(value)


def _fit(text: str) -> str:
    text = one_line(text)
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def table(rows: Iterable[Any], columns: Sequence[Column], out: TextIO) -> None:
    cells = [[_fit(cell(pick(row, path))) for _, path in columns] for row in rows]
    headers = [header for header, _ in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    out.write("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    out.write("\n")
    for row in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def record(row: Any, out: TextIO, prefix: str = "") -> None:
    """One resource as `field: value` lines, nested fields dotted."""
    if not isinstance(row, dict):
        out.write(f"{prefix.rstrip('.') or 'value'}: {cell(row)}\n")
        return
    for key, value in row.items():
        if isinstance(value, dict) and value:
            record(value, out, f"{prefix}{key}.")
        else:
            out.write(f"{prefix}{key}: {cell(value)}\n")


def as_json(value: Any, out: TextIO) -> None:
    out.write(json.dumps(value, ensure_ascii=False, indent=2) + "\n")
