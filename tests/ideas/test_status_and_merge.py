"""The status workflow (PM/admin only, legal transitions, recorded, announced)
and merging duplicates."""

from __future__ import annotations

import grpc
import pytest
from cocreate.events.v1 import ideas_events_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1.idea_status_pb2 import (
    IDEA_STATUS_DECLINED,
    IDEA_STATUS_IN_PROGRESS,
    IDEA_STATUS_MERGED,
    IDEA_STATUS_OPEN,
    IDEA_STATUS_PLANNED,
    IDEA_STATUS_SHIPPED,
    IDEA_STATUS_UNDER_REVIEW,
)
from google.rpc import error_details_pb2

from tests.ideas.helpers import ADMIN, ALICE, BOB, PM, start_ideas, unknown_id
from tests.support import Platform, detail, error_reason, violated_fields


async def test_a_member_cannot_change_status_even_of_an_unknown_idea(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    for idea_id in (idea.id, unknown_id()):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.ChangeIdeaStatus(
                pb.ChangeIdeaStatusRequest(idea_id=idea_id, status=IDEA_STATUS_UNDER_REVIEW),
                metadata=ALICE,
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert (await ideas.get(idea.id)).status == IDEA_STATUS_OPEN
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.status(unknown_id(), IDEA_STATUS_UNDER_REVIEW)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_the_workflow_runs_to_shipped_and_each_change_is_recorded_and_announced(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    steps = [IDEA_STATUS_UNDER_REVIEW, IDEA_STATUS_PLANNED, IDEA_STATUS_IN_PROGRESS]
    for step in steps:
        assert (await ideas.status(idea.id, step, note=f"to {step}")).status == step
    shipped = await ideas.api.ChangeIdeaStatus(
        pb.ChangeIdeaStatusRequest(idea_id=idea.id, status=IDEA_STATUS_SHIPPED, note="in 3.0"),
        metadata=ADMIN,
    )
    assert shipped.idea.status == IDEA_STATUS_SHIPPED

    history = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=idea.id), metadata=ALICE
    )
    changes = [e for e in history.entries if e.kind == pb.IDEA_HISTORY_KIND_STATUS_CHANGED]
    assert [(e.old_status, e.new_status) for e in changes] == [
        (IDEA_STATUS_OPEN, IDEA_STATUS_UNDER_REVIEW),
        (IDEA_STATUS_UNDER_REVIEW, IDEA_STATUS_PLANNED),
        (IDEA_STATUS_PLANNED, IDEA_STATUS_IN_PROGRESS),
        (IDEA_STATUS_IN_PROGRESS, IDEA_STATUS_SHIPPED),
    ]
    assert [e.actor_id for e in changes] == ["pm-1", "pm-1", "pm-1", "admin-1"]
    assert changes[-1].note == "in 3.0" and changes[-1].event_time.seconds > 0

    sent = await ideas.events(ideas_events_pb2.IdeaStatusChanged)
    assert [(m.old_status, m.new_status) for _, m in sent] == [
        (e.old_status, e.new_status) for e in changes
    ]
    versions = [envelope.aggregate_version for envelope, _ in sent]
    assert versions == sorted(versions) and len(set(versions)) == 4
    assert sent[-1][1].actor_id == "admin-1" and sent[-1][1].author_id == "alice"


async def test_an_illegal_transition_names_the_allowed_next_states(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.status(idea.id, IDEA_STATUS_SHIPPED)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    info = detail(caught.value, error_details_pb2.ErrorInfo)
    assert info.reason == "ILLEGAL_STATUS_TRANSITION"
    assert info.metadata["allowed_next_statuses"] == "IDEA_STATUS_UNDER_REVIEW,IDEA_STATUS_DECLINED"

    await ideas.status(idea.id, IDEA_STATUS_DECLINED)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.status(idea.id, IDEA_STATUS_UNDER_REVIEW)
    info = detail(caught.value, error_details_pb2.ErrorInfo)
    assert info.metadata["allowed_next_statuses"] == ""
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.status(idea.id, IDEA_STATUS_MERGED)
    assert error_reason(caught.value) == "ILLEGAL_STATUS_TRANSITION"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.status(idea.id, 0)
    assert violated_fields(caught.value) == {"status"}
    assert len(await ideas.events(ideas_events_pb2.IdeaStatusChanged)) == 1


async def test_merge_moves_comments_and_tags_and_is_recorded_on_both(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    target = await ideas.submit(product.id, "Dark mode everywhere", tags=["ui"])
    source = await ideas.submit(product.id, "Night theme please", tags=["theme", "ui"], who=BOB)
    await ideas.api.AddComment(pb.AddCommentRequest(idea_id=source.id, body="+1"), metadata=ALICE)

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.MergeIdeas(
            pb.MergeIdeasRequest(source_idea_id=source.id, target_idea_id=target.id),
            metadata=ALICE,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED

    merged = await ideas.api.MergeIdeas(
        pb.MergeIdeasRequest(source_idea_id=source.id, target_idea_id=target.id, note="dup"),
        metadata=PM,
    )
    assert merged.source.status == IDEA_STATUS_MERGED
    assert merged.source.merged_into_idea_id == target.id
    assert list(merged.target.tags) == ["ui", "theme"]
    assert merged.target.comment_count == 1 and merged.source.comment_count == 0
    comments = await ideas.api.ListComments(
        pb.ListCommentsRequest(idea_id=target.id), metadata=ALICE
    )
    assert [c.body for c in comments.comments] == ["+1"]

    source_history = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=source.id), metadata=ALICE
    )
    target_history = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=target.id), metadata=ALICE
    )
    assert [(e.kind, e.related_idea_id, e.actor_id) for e in source_history.entries][-1] == (
        pb.IDEA_HISTORY_KIND_MERGED_INTO,
        target.id,
        "pm-1",
    )
    assert [(e.kind, e.related_idea_id) for e in target_history.entries][-1] == (
        pb.IDEA_HISTORY_KIND_MERGE_RECEIVED,
        source.id,
    )
    sent = await ideas.events(ideas_events_pb2.IdeasMerged)
    assert [(m.source_idea_id, m.target_idea_id) for _, m in sent] == [(source.id, target.id)]
    assert [(m.source_title, m.target_title) for _, m in sent] == [(source.title, target.title)]

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.AddComment(pb.AddCommentRequest(idea_id=source.id, body="x"), metadata=BOB)
    assert error_reason(caught.value) == "IDEA_MERGED"
    listed = await ideas.list_all(pb.ListIdeasRequest())
    assert [i.id for i in listed] == [target.id]


async def test_merge_chains_resolve_to_the_final_target(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    a, b, c, d = [await ideas.submit(product.id, f"Duplicate idea {n}") for n in "abcd"]

    async def merge(source: str, target: str) -> pb.MergeIdeasResponse:
        request = pb.MergeIdeasRequest(source_idea_id=source, target_idea_id=target)
        answer: pb.MergeIdeasResponse = await ideas.api.MergeIdeas(request, metadata=PM)
        return answer

    await merge(a.id, b.id)
    await merge(b.id, c.id)
    assert (await ideas.get(a.id)).merged_into_idea_id == c.id
    answer = await merge(d.id, a.id)  # a → c
    assert answer.target.id == c.id and answer.source.merged_into_idea_id == c.id
    sent = await ideas.events(ideas_events_pb2.IdeasMerged)
    assert [m.target_idea_id for _, m in sent] == [b.id, c.id, c.id]


async def test_merge_into_itself_or_a_closed_idea_is_refused(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    a, b, shipped = [await ideas.submit(product.id, f"Another idea {n}") for n in "abs"]
    for step in (
        IDEA_STATUS_UNDER_REVIEW,
        IDEA_STATUS_PLANNED,
        IDEA_STATUS_IN_PROGRESS,
        IDEA_STATUS_SHIPPED,
    ):
        await ideas.status(shipped.id, step)

    async def refused(source: str, target: str) -> grpc.aio.AioRpcError:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.MergeIdeas(
                pb.MergeIdeasRequest(source_idea_id=source, target_idea_id=target), metadata=PM
            )
        return caught.value

    assert violated_fields(await refused(a.id, a.id)) == {"target_idea_id"}
    assert error_reason(await refused(a.id, shipped.id)) == "TARGET_CLOSED"
    assert error_reason(await refused(shipped.id, a.id)) == "SOURCE_CLOSED"
    await ideas.api.MergeIdeas(
        pb.MergeIdeasRequest(source_idea_id=b.id, target_idea_id=a.id), metadata=PM
    )
    assert error_reason(await refused(a.id, b.id)) == "MERGE_INTO_SELF"  # b resolves to a
    assert error_reason(await refused(b.id, a.id)) == "ALREADY_MERGED"
    assert (await refused(unknown_id(), a.id)).code() == grpc.StatusCode.NOT_FOUND
    assert (await refused(a.id, unknown_id())).code() == grpc.StatusCode.NOT_FOUND
    assert len(await ideas.events(ideas_events_pb2.IdeasMerged)) == 1


async def test_a_retried_status_change_with_its_request_id_applies_once(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    request = pb.ChangeIdeaStatusRequest(
        idea_id=idea.id, status=IDEA_STATUS_UNDER_REVIEW, request_id="triage-1"
    )
    first = await ideas.api.ChangeIdeaStatus(request, metadata=PM)
    again = await ideas.api.ChangeIdeaStatus(request, metadata=PM)
    assert first == again
    assert len(await ideas.events(ideas_events_pb2.IdeaStatusChanged)) == 1


async def test_every_pm_method_refuses_a_member_before_looking_anything_up(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    missing = unknown_id()
    calls = [
        ideas.api.ChangeIdeaStatus(
            pb.ChangeIdeaStatusRequest(idea_id=missing, status=IDEA_STATUS_DECLINED),
            metadata=ALICE,
        ),
        ideas.api.MergeIdeas(
            pb.MergeIdeasRequest(source_idea_id=missing, target_idea_id=unknown_id()),
            metadata=ALICE,
        ),
        ideas.api.HideIdea(pb.HideIdeaRequest(idea_id=missing, reason="x"), metadata=ALICE),
        ideas.api.HideComment(
            pb.HideCommentRequest(comment_id=missing, reason="x"), metadata=ALICE
        ),
        ideas.api.AddComment(
            pb.AddCommentRequest(idea_id=missing, body="x", official=True), metadata=ALICE
        ),
        ideas.api.UpdateProduct(pb.UpdateProductRequest(product_id=missing, name="x"), metadata=PM),
        ideas.api.CreateProduct(pb.CreateProductRequest(name="x"), metadata=PM),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert error_reason(caught.value) == "PERMISSION_DENIED"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in ideas.api.ExportIdeas(pb.ExportIdeasRequest(), metadata=BOB):
            pass
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
