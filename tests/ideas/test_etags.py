"""Updates of an idea, a product or a comment that carry the etag the caller
read apply only to that version (AIP-154): a stale etag is ABORTED and changes
nothing, so two editors cannot silently overwrite each other. Without an etag
an update applies as before; a tally does not change an idea's etag."""

from __future__ import annotations

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from google.protobuf import field_mask_pb2

from tests.ideas.helpers import ADMIN, ALICE, BOB, start_ideas
from tests.support import Platform, error_reason, eventually, violated_fields


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


async def test_a_stale_etag_is_aborted_and_changes_nothing(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id, "Dark mode", who=ALICE)
    assert idea.etag

    first = await ideas.api.UpdateIdea(
        pb.UpdateIdeaRequest(
            idea_id=idea.id, title="Dark mode v2", etag=idea.etag, update_mask=mask("title")
        ),
        metadata=ALICE,
    )
    assert first.idea.title == "Dark mode v2" and first.idea.etag != idea.etag

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateIdea(
            pb.UpdateIdeaRequest(
                idea_id=idea.id, title="Lost update", etag=idea.etag, update_mask=mask("title")
            ),
            metadata=ALICE,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert error_reason(caught.value) == "ETAG_MISMATCH"
    assert (await ideas.get(idea.id)).title == "Dark mode v2"

    # A tally is not an edit: the etag the author holds stays good.
    await ideas.feed_tally(idea.id, version=1, score=5)

    async def folded() -> bool:
        return (await ideas.get(idea.id)).weighted_score == 5

    await eventually(folded)
    assert (await ideas.get(idea.id)).etag == first.idea.etag

    # Without an etag the update applies unconditionally.
    last = await ideas.api.UpdateIdea(
        pb.UpdateIdeaRequest(idea_id=idea.id, body="now with schedules", update_mask=mask("body")),
        metadata=ALICE,
    )
    assert last.idea.body == "now with schedules"


async def test_products_and_comments_carry_etags_too(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product("Watch")
    renamed = await ideas.api.UpdateProduct(
        pb.UpdateProductRequest(
            product_id=product.id, name="Watch 2", etag=product.etag, update_mask=mask("name")
        ),
        metadata=ADMIN,
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateProduct(
            pb.UpdateProductRequest(
                product_id=product.id, name="Watch 3", etag=product.etag, update_mask=mask("name")
            ),
            metadata=ADMIN,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED
    assert (
        await ideas.api.GetProduct(pb.GetProductRequest(product_id=product.id), metadata=ADMIN)
    ).product == renamed.product

    idea = await ideas.submit(product.id, "Longer battery")
    added = await ideas.api.AddComment(
        pb.AddCommentRequest(idea_id=idea.id, body="yes"), metadata=BOB
    )
    edited = await ideas.api.UpdateComment(
        pb.UpdateCommentRequest(
            comment_id=added.comment.id, body="yes please", etag=added.comment.etag
        ),
        metadata=BOB,
    )
    assert edited.comment.etag != added.comment.etag
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateComment(
            pb.UpdateCommentRequest(
                comment_id=added.comment.id, body="no", etag=added.comment.etag
            ),
            metadata=BOB,
        )
    assert caught.value.code() == grpc.StatusCode.ABORTED


async def test_an_etag_that_cannot_be_one_is_the_callers_mistake(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    idea = await ideas.submit((await ideas.product()).id)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UpdateIdea(
            pb.UpdateIdeaRequest(
                idea_id=idea.id, title="x" * 5, etag="\x00" * 80, update_mask=mask("title")
            ),
            metadata=ALICE,
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {"etag"}
