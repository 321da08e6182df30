"""Products (boards) and submitting ideas: validation, exact text, idempotency,
the IdeaSubmitted event."""

from __future__ import annotations

import grpc
import pytest
from cocreate.events.v1 import ideas_events_pb2
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1.idea_status_pb2 import IDEA_STATUS_OPEN
from google.protobuf import field_mask_pb2

from tests.ideas.helpers import ADMIN, ALICE, PM, start_ideas, unknown_id
from tests.support import Platform, error_reason, violated_fields


async def test_admin_creates_renames_lists_and_archives_products(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    phone = await ideas.product("Phone")
    watch = await ideas.product("Watch")

    renamed = await ideas.api.UpdateProduct(
        pb.UpdateProductRequest(
            product_id=phone.id,
            name="Phone OS",
            update_mask=field_mask_pb2.FieldMask(paths=["name"]),
        ),
        metadata=ADMIN,
    )
    assert renamed.product.name == "Phone OS"
    got = await ideas.api.GetProduct(pb.GetProductRequest(product_id=phone.id), metadata=ALICE)
    assert got.product.name == "Phone OS"

    await ideas.api.ArchiveProduct(pb.ArchiveProductRequest(product_id=watch.id), metadata=ADMIN)
    active = await ideas.api.ListProducts(pb.ListProductsRequest(), metadata=ALICE)
    assert [p.name for p in active.products] == ["Phone OS"]
    everything = await ideas.api.ListProducts(
        pb.ListProductsRequest(include_archived=True, page_size=1), metadata=ALICE
    )
    assert [p.name for p in everything.products] == ["Phone OS"]
    rest = await ideas.api.ListProducts(
        pb.ListProductsRequest(
            include_archived=True, page_size=1, page_token=everything.next_page_token
        ),
        metadata=ALICE,
    )
    assert [(p.name, p.archived) for p in rest.products] == [("Watch", True)]
    assert rest.next_page_token == ""


async def test_product_rules_names_and_permissions(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    await ideas.product("Tablet")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.CreateProduct(pb.CreateProductRequest(name="tablet"), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.CreateProduct(pb.CreateProductRequest(name="  "), metadata=ADMIN)
    assert violated_fields(caught.value) == {"name"}
    for who in (ALICE, PM):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.ArchiveProduct(
                pb.ArchiveProductRequest(product_id=unknown_id()), metadata=who
            )
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.GetProduct(pb.GetProductRequest(product_id=unknown_id()), metadata=ALICE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_archived_product_takes_no_new_ideas(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    await ideas.api.ArchiveProduct(pb.ArchiveProductRequest(product_id=product.id), metadata=ADMIN)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.submit(product.id)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(caught.value) == "PRODUCT_ARCHIVED"


async def test_submit_keeps_unicode_sql_and_html_exactly_and_normalises_tags(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    title = "  如何提高电池续航 🔋 '); drop table ideas;-- \x07\x1b[31m\nred  "
    body = "<script>alert('x')</script>\n\tSELECT * FROM ideas; -- Ünïcödé é \x07\x1b[0m\x7f\r\n"
    idea = await ideas.submit(
        product.id, title, body=body, tags=["Battery Life", "电池", "battery-life"]
    )
    assert idea.title == title.strip()
    assert idea.body == body.strip()
    assert list(idea.tags) == ["battery-life", "电池"]
    assert idea.author_id == "alice"
    assert idea.status == IDEA_STATUS_OPEN
    assert idea.number >= 1
    again = await ideas.get(idea.id, who=ALICE)
    assert (again.title, again.body) == (idea.title, idea.body)

    sent = await ideas.events(ideas_events_pb2.IdeaSubmitted)
    assert len(sent) == 1
    envelope, event = sent[0]
    assert (event.idea_id, event.product_id, event.author_id) == (idea.id, product.id, "alice")
    assert event.title == idea.title and list(event.tags) == list(idea.tags)
    assert envelope.aggregate_id == idea.id and envelope.aggregate_version == 1


BAD_SUBMISSIONS: list[tuple[dict[str, object], set[str]]] = [
    ({"title": "ab"}, {"title"}),
    ({"title": "x" * 121}, {"title"}),
    ({"title": "nul \x00 in the title"}, {"title"}),
    ({"body": "x" * 10_001}, {"body"}),
    ({"body": "nul \x00 byte"}, {"body"}),
    ({"tags": [f"t{i}" for i in range(11)]}, {"tags"}),
    ({"tags": ["ok", "no/slash"]}, {"tags[1]"}),
    ({"tags": ["x" * 33]}, {"tags[0]"}),
    ({"product_id": "not-a-uuid"}, {"product_id"}),
    ({"title": "", "product_id": ""}, {"title", "product_id"}),
]


async def test_bad_submissions_name_the_field_and_change_nothing(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    for request_fields, fields in BAD_SUBMISSIONS:
        request = pb.SubmitIdeaRequest(product_id=product.id, title="A valid title")
        for name, value in request_fields.items():
            if isinstance(value, list):
                getattr(request, name).extend(value)
            else:
                setattr(request, name, value)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.SubmitIdea(request, metadata=ALICE)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, request_fields
        assert violated_fields(caught.value) == fields, request_fields
    listed = await ideas.api.ListIdeas(pb.ListIdeasRequest(), metadata=ALICE)
    assert list(listed.ideas) == []
    assert await ideas.events(ideas_events_pb2.IdeaSubmitted) == []


async def test_submit_with_a_request_id_applies_once(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    request = pb.SubmitIdeaRequest(product_id=product.id, title="Dark mode", request_id="r-1")
    first = await ideas.api.SubmitIdea(request, metadata=ALICE)
    second = await ideas.api.SubmitIdea(request, metadata=ALICE)
    assert first.idea.id == second.idea.id
    assert len(await ideas.events(ideas_events_pb2.IdeaSubmitted)) == 1


async def test_unknown_product_and_idea_are_not_found(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.submit(unknown_id())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.get(unknown_id())
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_idea_is_found_by_its_link_able_number(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    first = await ideas.submit(product.id, "First idea")
    second = await ideas.submit(product.id, "Second idea")
    assert second.number > first.number
    answer = await ideas.api.GetIdea(pb.GetIdeaRequest(number=second.number), metadata=ALICE)
    assert answer.idea.id == second.id
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.GetIdea(pb.GetIdeaRequest(number=second.number + 100), metadata=ALICE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    # One key or the other (a oneof): neither is the caller's mistake.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.GetIdea(pb.GetIdeaRequest(), metadata=ALICE)
    assert violated_fields(caught.value) == {"idea_id"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.GetIdea(pb.GetIdeaRequest(number=0), metadata=ALICE)
    assert violated_fields(caught.value) == {"number"}
