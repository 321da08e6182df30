"""Finding 8: a client that goes away in the middle of a stream is normal: no
error is logged, and the service goes on serving."""

from __future__ import annotations

import logging

import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as pb

from tests.ideas.helpers import ADMIN, start_ideas
from tests.support import Platform, eventually


@pytest.mark.parametrize("export_format", [pb.EXPORT_FORMAT_UNSPECIFIED, pb.EXPORT_FORMAT_CSV])
async def test_a_cancelled_export_logs_no_error_and_stops_its_query(
    platform: Platform, caplog: pytest.LogCaptureFixture, export_format: pb.ExportFormat.ValueType
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    for n in range(5):
        await ideas.submit(product.id, f"Idea number {n}")
    # Enough rows that the export cannot finish before the cancel arrives:
    # their messages (about 3 MB as rows, more as CSV) are far more than
    # gRPC's flow-control window, even grown, so the
    # server waits for the client to read, and the client cancels instead.
    await ideas.service.runtime.pool.execute(
        "with idea as (insert into ideas (id, product_id, title, status, author_id) "
        "    select gen_random_uuid(), $1::uuid, 'Filler idea ' || n, 1, 'filler' "
        "    from generate_series(1, 30000) n returning id, product_id) "
        "insert into idea_tallies (idea_id, product_id) select id, product_id from idea",
        product.id,
    )
    with caplog.at_level(logging.INFO):
        for _ in range(3):
            call = ideas.api.ExportIdeas(
                pb.ExportIdeasRequest(format=export_format), metadata=ADMIN
            )
            await call.read()
            call.cancel()

        async def logged_cancelled() -> bool:
            calls = [r for r in caplog.records if getattr(r, "method", "").endswith("ExportIdeas")]
            return len([r for r in calls if getattr(r, "code", "") == "CANCELLED"]) == 3

        await eventually(logged_cancelled, within=10)

        async def no_export_query_left() -> bool:
            running = await ideas.service.runtime.pool.fetchval(
                "select count(*) from pg_stat_activity "
                "where pid <> pg_backend_pid() and state = 'active' "
                "and query ilike '%from ideas i%'"
            )
            return bool(running == 0)

        await eventually(no_export_query_left, within=10)
        listed = await ideas.api.ListIdeas(pb.ListIdeasRequest(page_size=5), metadata=ADMIN)
        assert len(listed.ideas) == 5
    problems = [
        (r.name, r.getMessage(), r.exc_info is not None)
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.getMessage().startswith("development mode")
    ]
    assert problems == []
