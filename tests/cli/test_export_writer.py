"""The export writers: the formats read back, and memory stays flat as rows grow."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from collections.abc import Iterator

import pytest
from cocreate.ideas.v1 import idea_status_pb2, ideas_service_pb2
from google.protobuf import timestamp_pb2

from cli.export import (
    FORMATS,
    Progress,
    Row,
    columns,
    flatten,
    row_descriptor,
    unwrap,
    write_rows,
)

HEADER = ["id", "number", "title", "tags", "voters_by_tier", "trending_score"]


def rows(count: int) -> Iterator[Row]:
    for i in range(count):
        yield {
            "id": f"idea-{i:08d}",
            "number": i,
            "title": f'Idea number {i}, with a comma and "quotes" | and a pipe',
            "tags": ["export", f"t{i % 7}"],
            "voters_by_tier": {"core": i % 3, "member": i % 5},
            "trending_score": i / 7,
        }


class Sink(io.TextIOBase):
    """A stream that keeps nothing, so only the writer's own memory is measured."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)


def peak_bytes(fmt: str, count: int) -> int:
    tracemalloc.start()
    try:
        write_rows(rows(count), HEADER, fmt, Sink())
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("fmt", FORMATS)
def test_writer_memory_stays_flat_as_rows_grow(fmt: str) -> None:
    small = peak_bytes(fmt, 1_000)
    large = peak_bytes(fmt, 20_000)
    # Twenty times the rows; a writer that kept them would need ~20 times the memory.
    assert large < small * 1.5 + 16_384, (small, large)


def test_csv_reads_back_with_header_columns_and_order() -> None:
    out = io.StringIO()
    assert write_rows(rows(50), HEADER, "csv", out) == 50
    read = list(csv.reader(io.StringIO(out.getvalue())))
    assert read[0] == HEADER
    assert len(read) == 51
    assert [r[1] for r in read[1:]] == [str(i) for i in range(50)]
    assert read[4][2] == 'Idea number 3, with a comma and "quotes" | and a pipe'
    assert read[4][3] == "export;t3"
    assert read[4][4] == "core=0;member=3"


def test_csv_keeps_newlines_and_unicode() -> None:
    out = io.StringIO()
    write_rows([{"id": "x", "title": "两行\n标题, ok"}], ["id", "title"], "csv", out)
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [
        ["id", "title"],
        ["x", "两行\n标题, ok"],
    ]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_json_is_one_array_of_objects_in_order(count: int) -> None:
    out = io.StringIO()
    write_rows(rows(count), HEADER, "json", out)
    parsed = json.loads(out.getvalue())
    assert [r["number"] for r in parsed] == list(range(count))
    if count:
        assert list(parsed[0]) == HEADER
        assert parsed[0]["tags"] == ["export", "t0"]


def test_markdown_is_a_table_with_pipes_escaped() -> None:
    out = io.StringIO()
    write_rows(rows(2), HEADER, "md", out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    assert lines[1] == "|" + "|".join(" --- " for _ in HEADER) + "|"
    assert len(lines) == 4
    assert "\\| and a pipe" in lines[2]
    cells = re.split(r"(?<!\\)\|", lines[2])[1:-1]
    assert len(cells) == len(HEADER)


def test_export_row_columns_come_from_the_descriptor() -> None:
    header = columns(row_descriptor(ideas_service_pb2.ExportIdeasResponse.DESCRIPTOR))
    assert header == [f.name for f in ideas_service_pb2.ExportedIdea.DESCRIPTOR.fields]
    assert header[:3] == ["id", "number", "product_id"]


def test_a_batch_of_rows_unwraps_to_its_rows_in_order() -> None:
    batch = ideas_service_pb2.ExportIdeasResponse(
        ideas=[ideas_service_pb2.ExportedIdea(id=f"i{n}", number=n) for n in range(3)]
    )
    assert [flatten(row)["id"] for row in unwrap(batch)] == ["i0", "i1", "i2"]
    assert list(unwrap(ideas_service_pb2.ExportIdeasResponse())) == []


def test_flatten_maps_enums_timestamps_lists_and_maps() -> None:
    created = timestamp_pb2.Timestamp(seconds=1_800_000_000)
    idea = ideas_service_pb2.ExportedIdea(
        id="i1",
        number=7,
        title="t",
        status=idea_status_pb2.IDEA_STATUS_UNDER_REVIEW,
        create_time=created,
        voters_by_tier={"member": 2, "core": 1},
        tags=["a", "b"],
    )
    row = flatten(idea)
    assert row["status"] == "under_review"
    assert row["create_time"] == "2027-01-15T08:00:00Z"
    assert row["voters_by_tier"] == {"core": 1, "member": 2}
    assert row["tags"] == ["a", "b"]
    assert row["number"] == 7


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_shown_on_a_terminal_only() -> None:
    terminal = Terminal()
    write_rows(rows(3), HEADER, "csv", io.StringIO(), Progress(terminal, every_seconds=0))
    assert terminal.getvalue().startswith("\rexported 1 ideas")
    assert terminal.getvalue().rsplit("\r", 1)[-1].startswith("exported 3 ideas")
    assert terminal.getvalue().endswith("\n")

    piped = io.StringIO()
    write_rows(rows(3), HEADER, "csv", io.StringIO(), Progress(piped, every_seconds=0))
    assert piped.getvalue() == ""
