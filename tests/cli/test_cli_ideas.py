"""Triage and export against the real ideas service."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as ideas
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc

from cli.export import columns, flatten, row_descriptor, unwrap, write_rows
from services.kit.server import RunningService
from tests.cli.conftest import RunCli, token
from tests.support import Platform, metadata, new_product, stub, submit_idea

EXPORT_COLUMNS = [
    "id",
    "number",
    "product_id",
    "product_name",
    "title",
    "status",
    "author_id",
    "create_time",
    "weighted_score",
    "voter_count",
    "voters_by_tier",
    "trending_score",
    "comment_count",
    "tags",
]
BULK = 10_000


@pytest.fixture
async def ideas_service(platform: Platform) -> RunningService:
    return await platform.start("ideas", env={"COCREATE_IDEAS_IDEAS_PER_HOUR": "1000"})


async def create_product(service: RunningService, name: str = "Board") -> str:
    return await new_product(stub(service, ideas_grpc.IdeaServiceStub), name)


async def submit(service: RunningService, product_id: str, title: str, **fields: Any) -> Any:
    fields.setdefault("body", "")
    api = stub(service, ideas_grpc.IdeaServiceStub)
    return await submit_idea(api, product_id, "member-1", title, **fields)


async def bulk_insert(service: RunningService, product_id: str, count: int) -> None:
    """`count` ideas written straight into the ideas database (fast), with
    distinct scores 1..count so the `top` order is known."""
    await service.runtime.pool.execute(
        """
        with idea as (
            insert into ideas (id, product_id, title, body, tags, status, author_id)
            select gen_random_uuid(), $1::uuid, 'Bulk idea ' || g, 'body',
                   array['bulk', 't' || g % 5], 1, 'author-' || g % 100
            from generate_series(1, $2::int) as g
            returning id, product_id, title
        )
        insert into idea_tallies (idea_id, product_id, weighted_score, voter_count,
                                  voters_by_tier, trending_score)
        select id, product_id, g, g % 50, jsonb_build_object('member', g % 50), g / 10.0
        from idea, lateral (select substr(title, 11)::int as g) bulk
        """,
        product_id,
        count,
    )


async def test_export_csv_of_10000_ideas_reads_back_with_columns_and_order(
    ideas_service: RunningService, run_cli: RunCli, tmp_path: Path
) -> None:
    product_id = await create_product(ideas_service)
    special = await submit(
        ideas_service, product_id, '导出, "quoted" title', body="line one\nline two", tags=["zh"]
    )
    await bulk_insert(ideas_service, product_id, BULK)
    target = tmp_path / "top.csv"
    result = await run_cli(
        "export", "--format", "csv", "--order", "top", "--out", str(target),
        "--ideas", ideas_service.address, "--token", token("pm-1", "pm"),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out == ""
    assert result.err == f"exported {BULK + 1:,} ideas to {target}\n"
    with target.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader)
        rows = [dict(zip(header, row, strict=True)) for row in reader]
    assert header == EXPORT_COLUMNS
    assert len(rows) == BULK + 1
    scores = [int(r["weighted_score"]) for r in rows]
    assert scores[:3] == [BULK, BULK - 1, BULK - 2]
    assert scores == sorted(scores, reverse=True)
    assert rows[0]["title"] == f"Bulk idea {BULK}"
    assert rows[0]["status"] == "open"
    assert rows[0]["product_name"] == "Board"
    assert rows[0]["tags"] == f"bulk;t{BULK % 5}"
    assert rows[0]["voters_by_tier"] == f"member={BULK % 50}"
    assert rows[-1]["id"] == special.id
    assert rows[-1]["title"] == '导出, "quoted" title'
    assert rows[-1]["create_time"].endswith("Z")


async def rendered_from_rows(service: RunningService, request: ideas.ExportIdeasRequest) -> str:
    """The CSV the CLI writes from ExportedIdea messages (the rows form)."""
    api = stub(service, ideas_grpc.IdeaServiceStub)
    call = api.ExportIdeas(request, metadata=metadata("pm-1", "pm"))
    messages = [batch async for batch in call]
    header = columns(row_descriptor(ideas.ExportIdeasResponse.DESCRIPTOR))
    out = io.StringIO()
    write_rows((flatten(r) for m in messages for r in unwrap(m)), header, "csv", out)
    return out.getvalue()


async def test_the_csv_postgres_renders_is_the_csv_the_cli_writes_from_rows(
    ideas_service: RunningService, run_cli: RunCli, tmp_path: Path
) -> None:
    """`export --format csv` takes CSV text Postgres renders; every kind of
    cell must come out byte for byte as the CLI writes it from row messages:
    quotes, commas, line breaks, empty text and lists, map order, enum names,
    whole and fractional doubles, and the filters and order."""
    product_id = await create_product(ideas_service, 'Board, "the first"')
    titles = [
        'comma, "quote" and | pipe',
        "line\nbreak and\r\ncarriage return",
        "导出 — unicode ünïcode",
        "trailing space ",
        "plain",
    ]
    for n, title in enumerate(titles):
        await submit(ideas_service, product_id, title, tags=["x", f"t{n}"] if n % 2 else [])
    pool = ideas_service.runtime.pool
    await pool.execute(
        """
        with idea as (
            update ideas set status = 1 + number % 6, comment_count = number % 4
            where product_id = $1::uuid
            returning id, number
        )
        update idea_tallies t set
            weighted_score = number * 3, voter_count = number,
            voters_by_tier = case number % 3
                when 0 then '{}'::jsonb
                when 1 then '{"member": 2, "core": 1, "Zed": 0, "ägypt": 4}'::jsonb
                else '{"member": 12}'::jsonb end,
            trending_score = (array[0, 2.5, 1.0 / 3, 0.00001, 123456.0, 7])[1 + number % 6]
        from idea where t.idea_id = idea.id
        """,
        product_id,
    )
    await bulk_insert(ideas_service, product_id, 300)
    requests = [
        (ideas.ExportIdeasRequest(order=ideas.IDEA_ORDER_TOP), ("--order", "top")),
        (
            ideas.ExportIdeasRequest(filter=ideas.IdeaFilter(tag="x"), limit=2),
            ("--tag", "x", "--limit", "2"),
        ),
        (ideas.ExportIdeasRequest(filter=ideas.IdeaFilter(tag="nothing")), ("--tag", "nothing")),
    ]
    flags = ("--ideas", ideas_service.address, "--token", token("pm-1", "pm"))
    for request, argv in requests:
        target = tmp_path / "out.csv"
        result = await run_cli("export", "--format", "csv", *argv, "--out", str(target), *flags)
        assert result.code == 0, result.err
        expected = await rendered_from_rows(ideas_service, request)
        assert target.read_bytes().decode() == expected, argv
        assert (
            result.err
            == f"exported {len(list(csv.reader(io.StringIO(expected)))) - 1:,} ideas to {target}\n"
        )
        target.unlink()
    streamed = await run_cli("export", "--format", "csv", "--order", "trending", *flags)
    assert streamed.code == 0, streamed.err
    assert streamed.out == await rendered_from_rows(
        ideas_service, ideas.ExportIdeasRequest(order=ideas.IDEA_ORDER_TRENDING)
    )


async def test_export_filters_and_other_formats(
    ideas_service: RunningService, run_cli: RunCli, tmp_path: Path
) -> None:
    product_id = await create_product(ideas_service)
    await bulk_insert(ideas_service, product_id, 30)
    flags = ("--ideas", ideas_service.address, "--token", token("pm-1", "pm"))
    as_json = await run_cli("export", "--format", "json", "--limit", "5", "--tag", "t1", *flags)
    assert as_json.code == 0, as_json.err
    exported = json.loads(as_json.out)
    assert [row["weighted_score"] for row in exported] == [26, 21, 16, 11, 6]
    assert all("t1" in row["tags"] for row in exported)

    markdown = await run_cli("export", "--format", "md", "--status", "planned", *flags)
    assert markdown.out.splitlines()[0] == "| " + " | ".join(EXPORT_COLUMNS) + " |"
    assert len(markdown.out.splitlines()) == 2

    target = tmp_path / "refused.csv"
    member = await run_cli(
        "export", "--out", str(target),
        "--ideas", ideas_service.address, "--token", token("m-1", "member"),
    )  # fmt: skip
    assert member.code == 4
    assert os.listdir(tmp_path) == []
    bad_time = await run_cli("export", "--created-after", "yesterday", *flags)
    assert bad_time.code == 2


async def test_triage_list_search_show_status_merge_hide(
    ideas_service: RunningService, run_cli: RunCli
) -> None:
    product_id = await create_product(ideas_service)
    first = await submit(ideas_service, product_id, "Dark mode for the dashboard")
    second = await submit(ideas_service, product_id, "Dashboard dark theme please")
    spam = await submit(ideas_service, product_id, "Buy cheap watches")
    flags = ("--ideas", ideas_service.address, "--token", token("pm-1", "pm"))

    listed = await run_cli("ideas", "list", "--order", "newest", *flags)
    assert listed.code == 0, listed.err
    lines = listed.out.splitlines()
    assert lines[0].split()[:3] == ["#", "ID", "STATUS"]
    assert [line.split()[1] for line in lines[1:]] == [spam.id, second.id, first.id]

    found = await run_cli("--output", "json", "ideas", "search", "dark", *flags)
    assert {i["id"] for i in json.loads(found.out)} == {first.id, second.id}

    shown = await run_cli("ideas", "show", first.id, *flags)
    assert f"title: {first.title}" in shown.out.splitlines()

    planned = await run_cli(
        "ideas", "status", first.id, "under-review", "--note", "looking", *flags
    )
    assert planned.code == 0, planned.err
    assert "under_review" in planned.out
    illegal = await run_cli("ideas", "status", first.id, "open", *flags)
    assert illegal.code == 5
    assert "FAILED_PRECONDITION" in illegal.err

    merged = await run_cli("ideas", "merge", second.id, first.id, *flags)
    assert merged.code == 0, merged.err
    assert merged.out.splitlines()[0].startswith("source:")
    assert "merged" in merged.out.splitlines()[0]

    hidden = await run_cli("ideas", "hide", spam.id, "--reason", "spam", "--spam", *flags)
    assert hidden.code == 0, hidden.err
    assert "(hidden)" in hidden.out

    history = await run_cli("ideas", "history", first.id, *flags)
    assert history.code == 0
    assert len(history.out.splitlines()) >= 3

    member_flags = ("--ideas", ideas_service.address, "--token", token("m-1", "member"))
    refused = await run_cli("ideas", "hide", first.id, "--reason", "x", *member_flags)
    assert refused.code == 4
    missing = await run_cli("ideas", "show", "00000000-0000-0000-0000-000000000000", *flags)
    assert missing.code == 3
    assert "NOT_FOUND" in missing.err
