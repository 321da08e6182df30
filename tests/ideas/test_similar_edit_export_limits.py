"""Similar ideas (Chinese too), editing with its window and history, the
streaming export, and the per-member rate limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1.idea_status_pb2 import (
    IDEA_STATUS_DECLINED,
    IDEA_STATUS_OPEN,
    IDEA_STATUS_UNDER_REVIEW,
)
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import error_details_pb2

from tests.ideas.helpers import ALICE, BOB, PM, SERVICE, start_ideas
from tests.support import Platform, detail, error_reason, eventually, violated_fields


async def test_a_chinese_title_finds_its_near_duplicate(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    battery = await ideas.submit(product.id, "如何提高电池续航时间")
    await ideas.submit(product.id, "相机夜景模式优化")
    await ideas.submit(product.id, "Longer battery life")
    await ideas.submit(product.id, "桌面图标自定义大小")
    found = await ideas.api.FindSimilarIdeas(
        pb.FindSimilarIdeasRequest(title="提高电池续航的方法"), metadata=BOB
    )
    assert [s.idea.id for s in found.similar_ideas] == [battery.id]
    assert 0 < found.similar_ideas[0].similarity <= 1


async def test_similar_ideas_rank_by_closeness_and_skip_hidden_and_merged(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product, other = await ideas.product(), await ideas.product()
    exact = await ideas.submit(product.id, "Dark mode for settings")
    near = await ideas.submit(product.id, "Dark mode for the whole app")
    await ideas.submit(product.id, "Bigger fonts in mail")
    hidden = await ideas.submit(product.id, "Dark mode for settings page", who=BOB)
    merged = await ideas.submit(product.id, "Dark mode settings screen")
    elsewhere = await ideas.submit(other.id, "Dark mode for settings too")
    await ideas.api.HideIdea(pb.HideIdeaRequest(idea_id=hidden.id, reason="dup"), metadata=PM)
    await ideas.api.MergeIdeas(
        pb.MergeIdeasRequest(source_idea_id=merged.id, target_idea_id=exact.id), metadata=PM
    )
    found = await ideas.api.FindSimilarIdeas(
        pb.FindSimilarIdeasRequest(title="dark mode for setings", product_id=product.id),
        metadata=ALICE,
    )
    ids = [s.idea.id for s in found.similar_ideas]
    assert ids[0] == exact.id and near.id in ids
    assert hidden.id not in ids and merged.id not in ids and elsewhere.id not in ids
    scores = [s.similarity for s in found.similar_ideas]
    assert scores == sorted(scores, reverse=True)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.FindSimilarIdeas(pb.FindSimilarIdeasRequest(title=" a "), metadata=ALICE)
    assert violated_fields(caught.value) == {"title"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.FindSimilarIdeas(
            pb.FindSimilarIdeasRequest(title="nul\x00", max_results=-1), metadata=ALICE
        )
    assert violated_fields(caught.value) == {"title", "max_results"}


async def test_the_author_edits_while_open_and_every_edit_is_in_the_history(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id, "Typo in titel", body="old body", tags=["a"])
    edited = await ideas.api.UpdateIdea(
        pb.UpdateIdeaRequest(
            idea_id=idea.id,
            title="Typo in title",
            tags=["b", "C"],
            update_mask=field_mask_pb2.FieldMask(paths=["title", "tags"]),
        ),
        metadata=ALICE,
    )
    assert (edited.idea.title, edited.idea.body, list(edited.idea.tags)) == (
        "Typo in title",
        "old body",
        ["b", "c"],
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateIdea(
            pb.UpdateIdeaRequest(idea_id=idea.id, title="Not my idea"), metadata=BOB
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateIdea(
            pb.UpdateIdeaRequest(
                idea_id=idea.id, update_mask=field_mask_pb2.FieldMask(paths=["status"])
            ),
            metadata=ALICE,
        )
    assert violated_fields(caught.value) == {"update_mask"}

    await ideas.status(idea.id, IDEA_STATUS_UNDER_REVIEW, note="looking")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateIdea(
            pb.UpdateIdeaRequest(
                idea_id=idea.id,
                body="late",
                update_mask=field_mask_pb2.FieldMask(paths=["body"]),
            ),
            metadata=ALICE,
        )
    assert error_reason(caught.value) == "IDEA_NOT_OPEN"
    await ideas.api.UpdateIdea(
        pb.UpdateIdeaRequest(
            idea_id=idea.id,
            body="PM clarified",
            update_mask=field_mask_pb2.FieldMask(paths=["body"]),
        ),
        metadata=PM,
    )
    await ideas.api.HideIdea(pb.HideIdeaRequest(idea_id=idea.id, reason="off topic"), metadata=PM)

    pages: list[pb.IdeaHistoryEntry] = []
    request = pb.ListIdeaHistoryRequest(idea_id=idea.id, page_size=2)
    while True:
        page = await ideas.api.ListIdeaHistory(request, metadata=PM)
        pages += page.entries
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert [(e.kind, e.actor_id) for e in pages] == [
        (pb.IDEA_HISTORY_KIND_SUBMITTED, "alice"),
        (pb.IDEA_HISTORY_KIND_EDITED, "alice"),
        (pb.IDEA_HISTORY_KIND_STATUS_CHANGED, "pm-1"),
        (pb.IDEA_HISTORY_KIND_EDITED, "pm-1"),
        (pb.IDEA_HISTORY_KIND_HIDDEN, "pm-1"),
    ]
    first_edit = pages[1]
    assert list(first_edit.changed_fields) == ["title", "tags"]
    assert first_edit.previous_title == "Typo in titel" and list(first_edit.previous_tags) == ["a"]
    assert pages[3].previous_body == "old body"
    times = [e.event_time.ToDatetime() for e in pages]
    assert times == sorted(times)


async def test_the_edit_window_closes_for_the_author_but_not_for_pms(platform: Platform) -> None:
    ideas = await start_ideas(platform, {"COCREATE_IDEAS_EDIT_WINDOW_SECONDS": "0"})
    product = await ideas.product()
    idea = await ideas.submit(product.id, "Too late to edit")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateIdea(
            pb.UpdateIdeaRequest(idea_id=idea.id, title="Edited title"), metadata=ALICE
        )
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "EDIT_WINDOW_CLOSED"
    answer = await ideas.api.UpdateIdea(
        pb.UpdateIdeaRequest(idea_id=idea.id, title="Edited title"), metadata=PM
    )
    assert answer.idea.title == "Edited title" and answer.idea.body == ""


async def test_export_streams_every_matching_row_with_its_columns(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product("Phone")
    top = await ideas.submit(product.id, "Top idea", tags=["x"])
    await ideas.api.AddComment(pb.AddCommentRequest(idea_id=top.id, body="yes"), metadata=BOB)
    declined = await ideas.submit(product.id, "Declined idea")
    await ideas.status(declined.id, IDEA_STATUS_DECLINED)
    await ideas.feed_tally(top.id, 1, 42, voters=3, by_tier={"gold": 2, "bronze": 1}, trending=4.5)

    async def tallied() -> bool:
        return await ideas.handled_tallies() == 1

    await eventually(tallied)
    async with ideas.service.runtime.pool.acquire() as conn:
        await conn.execute(
            "with idea as (insert into ideas (id, product_id, title, status, author_id) "
            "    select gen_random_uuid(), $1::uuid, 'Bulk ' || n, 1, 'm' "
            "    from generate_series(1, 1500) n returning id, product_id) "
            "insert into idea_tallies (idea_id, product_id) select id, product_id from idea",
            product.id,
        )

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in ideas.api.ExportIdeas(pb.ExportIdeasRequest(), metadata=ALICE):
            pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    request = pb.ExportIdeasRequest(
        filter=pb.IdeaFilter(product_id=product.id, statuses=[IDEA_STATUS_OPEN]),
        order=pb.IDEA_ORDER_TOP,
    )
    batches = [batch async for batch in ideas.api.ExportIdeas(request, metadata=PM)]
    assert [len(batch.ideas) for batch in batches] == [500, 500, 500, 1]
    rows = [row for batch in batches for row in batch.ideas]
    first = rows[0]
    assert (first.id, first.number, first.product_name, first.title) == (
        top.id,
        top.number,
        "Phone",
        "Top idea",
    )
    assert (first.status, first.author_id, first.weighted_score, first.voter_count) == (
        IDEA_STATUS_OPEN,
        "alice",
        42,
        3,
    )
    assert dict(first.voters_by_tier) == {"gold": 2, "bronze": 1}
    assert (first.trending_score, first.comment_count, list(first.tags)) == (4.5, 1, ["x"])
    assert first.create_time.seconds > 0

    window = pb.ExportIdeasRequest(order=pb.IDEA_ORDER_NEWEST, limit=5)
    window.created_after.FromDatetime(datetime.now(UTC) + timedelta(hours=1))
    assert [batch async for batch in ideas.api.ExportIdeas(window, metadata=SERVICE)] == []
    past = timestamp_pb2.Timestamp()
    past.FromDatetime(datetime.now(UTC) - timedelta(hours=1))
    window.created_after.CopyFrom(past)
    (batch,) = [batch async for batch in ideas.api.ExportIdeas(window, metadata=PM)]
    assert len(batch.ideas) == 5
    window.created_before.CopyFrom(past)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in ideas.api.ExportIdeas(window, metadata=PM):
            pass
    assert violated_fields(caught.value) == {"created_before"}


async def test_rate_limits_answer_resource_exhausted_with_a_retry_delay(
    platform: Platform,
) -> None:
    ideas = await start_ideas(
        platform,
        {"COCREATE_IDEAS_IDEAS_PER_HOUR": "2", "COCREATE_IDEAS_COMMENTS_PER_MINUTE": "2"},
    )
    product = await ideas.product()
    first = await ideas.submit(product.id, "Idea one")
    await ideas.submit(product.id, "Idea two")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.submit(product.id, "Idea three")
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    delay = detail(caught.value, error_details_pb2.RetryInfo).retry_delay
    assert 0 < delay.seconds <= 3600
    await ideas.submit(product.id, "Bob may still submit", who=BOB)

    for body in ("a", "b"):
        await ideas.api.AddComment(pb.AddCommentRequest(idea_id=first.id, body=body), metadata=BOB)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.AddComment(pb.AddCommentRequest(idea_id=first.id, body="c"), metadata=BOB)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert 0 < detail(caught.value, error_details_pb2.RetryInfo).retry_delay.seconds <= 60
    listed = await ideas.api.ListComments(pb.ListCommentsRequest(idea_id=first.id), metadata=BOB)
    assert len(listed.comments) == 2
