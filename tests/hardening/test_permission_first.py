"""Finding 7: UpdateIdea, UpdateComment and DeleteComment check permission
before existence: a member learns nothing from another's id or an unknown one."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as pb

from tests.ideas.helpers import ALICE, BOB, PM, start_ideas
from tests.support import Platform


async def _code(call: Awaitable[object]) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value.code()


async def test_permission_is_answered_before_existence(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id, "Alice's idea")
    comment = (
        await ideas.api.AddComment(
            pb.AddCommentRequest(idea_id=idea.id, body="Alice's comment"), metadata=ALICE
        )
    ).comment
    unknown = str(uuid.uuid4())
    denied = grpc.StatusCode.PERMISSION_DENIED
    for target in (idea.id, unknown):
        update = pb.UpdateIdeaRequest(idea_id=target, title="Bob was here")
        update.update_mask.paths.append("title")
        assert await _code(ideas.api.UpdateIdea(update, metadata=BOB)) == denied
    for target in (comment.id, unknown):
        assert (
            await _code(
                ideas.api.UpdateComment(
                    pb.UpdateCommentRequest(comment_id=target, body="Bob was here"), metadata=BOB
                )
            )
            == denied
        )
        assert (
            await _code(
                ideas.api.DeleteComment(pb.DeleteCommentRequest(comment_id=target), metadata=BOB)
            )
            == denied
        )
    # Those who may act on anything learn that an unknown id is unknown.
    update = pb.UpdateIdeaRequest(idea_id=unknown, title="PM edit")
    update.update_mask.paths.append("title")
    assert await _code(ideas.api.UpdateIdea(update, metadata=PM)) == grpc.StatusCode.NOT_FOUND
    assert (
        await _code(
            ideas.api.DeleteComment(pb.DeleteCommentRequest(comment_id=unknown), metadata=PM)
        )
        == grpc.StatusCode.NOT_FOUND
    )
    # Nothing changed.
    shown = await ideas.api.GetIdea(pb.GetIdeaRequest(idea_id=idea.id), metadata=ALICE)
    assert shown.idea.title == "Alice's idea"
    listed = await ideas.api.ListComments(pb.ListCommentsRequest(idea_id=idea.id), metadata=ALICE)
    assert [c.body for c in listed.comments] == ["Alice's comment"]
