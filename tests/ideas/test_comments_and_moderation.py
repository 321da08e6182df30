"""Comments (own edits, PM hiding, the official response, the count for "most
discussed") and moderation (hiding ideas, spam reports)."""

from __future__ import annotations

import grpc
import pytest
from cocreate.events.v1 import ideas_events_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as pb

from tests.ideas.helpers import ALICE, BOB, PM, start_ideas, unknown_id
from tests.support import Platform, violated_fields


async def test_comments_are_added_listed_in_pages_edited_and_deleted_by_their_author(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    added = []
    for n in range(5):
        answer = await ideas.api.AddComment(
            pb.AddCommentRequest(idea_id=idea.id, body=f"comment <b>{n}</b>"), metadata=BOB
        )
        added.append(answer.comment)
    first = await ideas.api.ListComments(
        pb.ListCommentsRequest(idea_id=idea.id, page_size=3), metadata=ALICE
    )
    rest = await ideas.api.ListComments(
        pb.ListCommentsRequest(idea_id=idea.id, page_size=3, page_token=first.next_page_token),
        metadata=ALICE,
    )
    assert [c.id for c in [*first.comments, *rest.comments]] == [c.id for c in added]
    assert rest.next_page_token == ""

    edited = await ideas.api.UpdateComment(
        pb.UpdateCommentRequest(comment_id=added[0].id, body="edited"), metadata=BOB
    )
    assert edited.comment.body == "edited"
    for call in (
        ideas.api.UpdateComment(
            pb.UpdateCommentRequest(comment_id=added[1].id, body="mine now"), metadata=ALICE
        ),
        ideas.api.DeleteComment(pb.DeleteCommentRequest(comment_id=added[1].id), metadata=ALICE),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await ideas.api.DeleteComment(pb.DeleteCommentRequest(comment_id=added[1].id), metadata=BOB)
    assert (await ideas.get(idea.id)).comment_count == 4

    for request, fields in (
        (pb.AddCommentRequest(idea_id=idea.id, body="  "), {"body"}),
        (pb.AddCommentRequest(idea_id="nope", body="x" * 5001), {"idea_id", "body"}),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.AddComment(request, metadata=BOB)
        assert violated_fields(caught.value) == fields
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.AddComment(
            pb.AddCommentRequest(idea_id=unknown_id(), body="hi"), metadata=BOB
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_pm_hides_a_comment_and_members_no_longer_see_it(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    rude = await ideas.api.AddComment(
        pb.AddCommentRequest(idea_id=idea.id, body="rude"), metadata=BOB
    )
    await ideas.api.AddComment(pb.AddCommentRequest(idea_id=idea.id, body="kind"), metadata=BOB)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.HideComment(
            pb.HideCommentRequest(comment_id=rude.comment.id, reason="abuse"), metadata=ALICE
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    hidden = await ideas.api.HideComment(
        pb.HideCommentRequest(comment_id=rude.comment.id, reason="abuse"), metadata=PM
    )
    assert hidden.comment.hidden and hidden.comment.hidden_reason == "abuse"

    members = await ideas.api.ListComments(pb.ListCommentsRequest(idea_id=idea.id), metadata=ALICE)
    assert [c.body for c in members.comments] == ["kind"]
    pms = await ideas.api.ListComments(pb.ListCommentsRequest(idea_id=idea.id), metadata=PM)
    assert [c.body for c in pms.comments] == ["rude", "kind"]
    assert (await ideas.get(idea.id)).comment_count == 1
    history = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=idea.id), metadata=PM
    )
    assert history.entries[-1].kind == pb.IDEA_HISTORY_KIND_COMMENT_HIDDEN
    assert history.entries[-1].note == "abuse"


async def test_an_official_response_by_a_pm_is_shown_with_the_idea(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.AddComment(
            pb.AddCommentRequest(idea_id=idea.id, body="official?", official=True),
            metadata=ALICE,
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await ideas.api.AddComment(pb.AddCommentRequest(idea_id=idea.id, body="nice"), metadata=BOB)
    response = await ideas.api.AddComment(
        pb.AddCommentRequest(idea_id=idea.id, body="Planned for 3.1", official=True),
        metadata=PM,
    )
    shown = await ideas.get(idea.id, who=ALICE)
    assert shown.official_response.id == response.comment.id
    assert shown.official_response.body == "Planned for 3.1"
    assert shown.official_response.official and shown.official_response.author_id == "pm-1"
    listed = await ideas.list_all(pb.ListIdeasRequest())
    assert listed[0].official_response.id == response.comment.id


async def test_hiding_an_idea_records_the_reason_and_announces_spam(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id, "Cheap pills here", who=BOB)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.HideIdea(
            pb.HideIdeaRequest(idea_id=unknown_id(), reason="spam"), metadata=ALICE
        )
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.HideIdea(pb.HideIdeaRequest(idea_id=idea.id), metadata=PM)
    assert violated_fields(caught.value) == {"reason"}

    for _ in range(2):  # hiding twice changes nothing the second time
        await ideas.api.HideIdea(
            pb.HideIdeaRequest(idea_id=idea.id, reason="advertising", spam=True), metadata=PM
        )
    sent = await ideas.events(ideas_events_pb2.IdeaHidden)
    assert len(sent) == 1
    event = sent[0][1]
    assert (event.idea_id, event.author_id, event.spam, event.reason, event.actor_id) == (
        idea.id,
        "bob",
        True,
        "advertising",
        "pm-1",
    )
    history = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=idea.id), metadata=PM
    )
    assert [(e.kind, e.note) for e in history.entries][-1] == (
        pb.IDEA_HISTORY_KIND_HIDDEN,
        "advertising",
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ListIdeaHistory(pb.ListIdeaHistoryRequest(idea_id=idea.id), metadata=BOB)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_members_report_spam_once_each_and_pms_see_the_count(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id, "Suspicious idea", who=BOB)
    for who in (ALICE, ALICE, PM):
        await ideas.api.ReportIdea(
            pb.ReportIdeaRequest(idea_id=idea.id, reason="spam link"), metadata=who
        )
    assert (await ideas.get(idea.id, who=PM)).report_count == 2
    assert (await ideas.get(idea.id, who=ALICE)).report_count == 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ReportIdea(pb.ReportIdeaRequest(idea_id=unknown_id()), metadata=ALICE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
