"""Writing exported rows as CSV, JSON or Markdown, one row at a time.

Columns come from the export row's protobuf descriptor (field order), so the
header is right even for an empty export and a new field in the .proto shows
up without CLI code. Nested messages become dotted columns, maps and repeated
fields one cell (`a;b`, `k=v;k=v`), timestamps ISO 8601, enums their short
lowercase name (IDEA_STATUS_PLANNED → planned).

Nothing is collected: each writer takes an iterator and writes as it goes, so
memory stays flat however many rows the server streams.
"""

from __future__ import annotations

import codecs
import csv
import functools
import json
import operator
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TextIO

from google.protobuf import json_format, message, timestamp_pb2

from services.kit.text import one_line

FORMATS = ("csv", "json", "md")

Row = dict[str, Any]
Cell = Callable[[Any], Any]
TIMESTAMP = "google.protobuf.Timestamp"


class Writable(Protocol):
    def write(self, text: str, /) -> int: ...


# Descriptors from the C (upb) and Python implementations differ in type; both work.
Descriptor = Any


def _wrapper_field(response: Descriptor) -> Any:
    """The only field of a response that holds messages, which wrap its rows
    (`{ IdeaRow row = 1; }` or `{ repeated IdeaRow ideas = 1; bytes csv = 2; }`),
    or None."""
    holders = [
        field
        for field in response.fields
        if field.message_type is not None
        and not _is_map(field)
        and not _is_special(field.message_type)
    ]
    return holders[0] if len(holders) == 1 else None


def row_descriptor(response: Descriptor) -> Descriptor:
    """The message that holds one row: the response itself, or the message
    its only field holds (one row, or a batch of rows)."""
    wrapper = _wrapper_field(response)
    return response if wrapper is None else wrapper.message_type


def unwrap(msg: message.Message) -> Iterator[message.Message]:
    """The rows a streamed message carries."""
    wrapper = _wrapper_field(msg.DESCRIPTOR)
    if wrapper is None:
        yield msg
    elif wrapper.is_repeated:
        yield from getattr(msg, wrapper.name)
    else:
        yield getattr(msg, wrapper.name)


def _is_map(field: Any) -> bool:
    return bool(field.message_type is not None and field.message_type.GetOptions().map_entry)


def _is_special(message_type: Descriptor) -> bool:
    return bool(message_type.full_name.startswith("google.protobuf."))


def columns(row_type: Descriptor, prefix: str = "") -> list[str]:
    names: list[str] = []
    for field in row_type.fields:
        nested = field.message_type
        if (
            nested is not None
            and not field.is_repeated
            and not _is_special(nested)
            and not _is_map(field)
        ):
            names.extend(columns(nested, f"{prefix}{field.name}."))
        else:
            names.append(prefix + field.name)
    return names


def _enum_name(field: Any, number: int) -> str:
    value = field.enum_type.values_by_number.get(number)
    if value is None:
        return str(number)
    name: str = value.name
    enum_prefix = _upper_snake(field.enum_type.name) + "_"
    if name.startswith(enum_prefix):
        name = name[len(enum_prefix) :]
    return name.lower()


def _upper_snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and not name[i - 1].isupper():
            out.append("_")
        out.append(ch.upper())
    return "".join(out)


def _timestamp_text(value: timestamp_pb2.Timestamp) -> str:
    if value.seconds == 0 and value.nanos == 0:
        return ""
    return value.ToDatetime().isoformat(timespec="seconds") + "Z"


def _converter(field: Any) -> Callable[[Any], Any] | None:
    """How a field's value becomes a cell value (None: as it is)."""
    if field.enum_type is not None:
        names = {v.number: _enum_name(field, v.number) for v in field.enum_type.values}
        return lambda number: names.get(number, str(number))
    if field.message_type is not None and field.message_type.full_name == TIMESTAMP:
        return _timestamp_text
    if field.message_type is not None:
        return json_format.MessageToDict
    return None


def _cells(row_type: Descriptor, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Cell]]:
    """(column, cell maker) for each column of a row message, nested ones dotted."""
    for field in row_type.fields:
        here = (*path, field.name)
        get = operator.attrgetter(".".join(here))
        if _is_map(field):
            convert = _converter(field.message_type.fields_by_name["value"])
            yield ".".join(here), _map_cell(get, convert)
        elif field.is_repeated:
            yield ".".join(here), _list_cell(get, _converter(field))
        elif field.message_type is not None and not _is_special(field.message_type):
            yield from _cells(field.message_type, here)
        else:
            convert = _converter(field)
            yield ".".join(here), get if convert is None else _then(get, convert)


def _then(get: Cell, convert: Callable[[Any], Any]) -> Cell:
    return lambda msg: convert(get(msg))


def _list_cell(get: Cell, convert: Callable[[Any], Any] | None) -> Cell:
    if convert is None:
        return lambda msg: list(get(msg))
    return lambda msg: [convert(v) for v in get(msg)]


def _map_cell(get: Cell, convert: Callable[[Any], Any] | None) -> Cell:
    if convert is None:
        return lambda msg: {str(k): v for k, v in sorted(get(msg).items())}
    return lambda msg: {str(k): convert(v) for k, v in sorted(get(msg).items())}


@functools.cache
def _plan(row_type: Descriptor) -> tuple[tuple[str, Cell], ...]:
    return tuple(_cells(row_type))


def flatten(msg: message.Message) -> Row:
    """One row: column name → str | int | float | bool | list | dict. How
    each column is read is worked out once per message type: an export
    flattens every row."""
    return {name: cell(msg) for name, cell in _plan(msg.DESCRIPTOR)}


def text(value: Any) -> str:
    """A cell of CSV or Markdown."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return ";".join(text(v) for v in value)
    if isinstance(value, dict):
        return ";".join(f"{k}={text(v)}" for k, v in value.items())
    if value is None:
        return ""
    return str(value)


def _md_cell(value: Any) -> str:
    return one_line(text(value)).replace("\\", "\\\\").replace("|", "\\|")


class Progress:
    """`exported N ideas (R/s)` on stderr, redrawn in place, only when stderr is a
    terminal (the export itself may go to stdout). `unit` is what is counted:
    ideas, or bytes of CSV text whose idea count comes only at the end."""

    def __init__(
        self, stream: TextIO | None = None, every_seconds: float = 0.2, unit: str = "ideas"
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty()
        self.every = every_seconds
        self.unit = unit
        self.count = 0
        self._started = time.monotonic()
        self._shown_at = 0.0

    def _show(self, end: str = "") -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self.stream.write(
            f"\rexported {self.count:,} {self.unit} "
            f"({self.count / elapsed:,.0f}/s, {elapsed:.1f}s){end}"
        )
        self.stream.flush()

    def tick(self, count: int = 1) -> None:
        self.count += count
        if self.enabled and time.monotonic() - self._shown_at >= self.every:
            self._shown_at = time.monotonic()
            self._show()

    def done(self) -> None:
        if self.enabled:
            self._show("\n")


def write_rows(
    rows: Iterable[Row],
    header: list[str],
    fmt: str,
    out: Writable,
    progress: Progress | None = None,
) -> int:
    """Write every row as it comes; return how many were written."""
    count = 0
    iterator: Iterator[Row] = iter(rows)
    if fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(header)
        for row in iterator:
            writer.writerow([text(row.get(c)) for c in header])
            count += 1
            if progress:
                progress.tick()
    elif fmt == "json":
        out.write("[")
        for row in iterator:
            out.write(",\n" if count else "\n")
            out.write(json.dumps({c: row.get(c) for c in header}, ensure_ascii=False))
            count += 1
            if progress:
                progress.tick()
        out.write("\n]\n" if count else "]\n")
    elif fmt == "md":
        out.write("| " + " | ".join(_md_cell(c) for c in header) + " |\n")
        out.write("|" + "|".join(" --- " for _ in header) + "|\n")
        for row in iterator:
            out.write("| " + " | ".join(_md_cell(row.get(c)) for c in header) + " |\n")
            count += 1
            if progress:
                progress.tick()
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if progress:
        progress.done()
    return count


def write_csv_pieces(
    messages: Iterable[Any], out: Writable, progress: Progress | None = None
) -> int:
    """Write CSV text the server rendered (ExportIdeasResponse.csv pieces, cut
    anywhere, even inside a character) as it comes; return the idea count the
    last message carries."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    count = 0
    for msg in messages:
        piece: bytes = msg.csv
        if piece:
            out.write(decoder.decode(piece))
            if progress:
                progress.tick(len(piece))
        count = max(count, msg.csv_row_count)
    out.write(decoder.decode(b"", final=True))
    if progress:
        progress.done()
    return count
