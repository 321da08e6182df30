"""Listing ideas: filters, the four orders, keyset pages, hidden ideas; and the
tally read model fed by the votes service's TalliesChanged events."""

from __future__ import annotations

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2 as pb
from cocreate.ideas.v1.idea_status_pb2 import (
    IDEA_STATUS_DECLINED,
    IDEA_STATUS_OPEN,
    IDEA_STATUS_UNDER_REVIEW,
)

from tests.ideas.helpers import ALICE, BOB, PM, start_ideas
from tests.support import Platform, eventually, violated_fields


async def test_a_tally_applied_twice_or_out_of_order_leaves_the_read_model_right(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await ideas.submit(product.id)

    await ideas.feed_tally(idea.id, 2, 7, voters=2, by_tier={"gold": 1, "bronze": 1}, trending=1.5)
    await ideas.feed_tally(idea.id, 2, 7, voters=2, by_tier={"gold": 1, "bronze": 1}, trending=1.5)
    await ideas.feed_tally(idea.id, 3, 9, voters=3, by_tier={"gold": 1, "bronze": 2}, trending=2.5)
    await ideas.feed_tally(idea.id, 1, 5, voters=1, by_tier={"gold": 1}, trending=0.5)

    async def all_handled() -> bool:
        return await ideas.handled_tallies() == 4

    await eventually(all_handled)
    got = await ideas.get(idea.id)
    assert (got.weighted_score, got.voter_count, got.trending_score) == (9, 3, 2.5)
    assert dict(got.voters_by_tier) == {"gold": 1, "bronze": 2}


async def test_a_lone_tally_event_from_an_earlier_votes_version_is_applied(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    idea = await ideas.submit((await ideas.product()).id)
    await ideas.feed_tally(idea.id, 1, 4, voters=2, by_tier={"core": 2}, one_per_event=True)

    async def applied() -> bool:
        return (await ideas.get(idea.id)).weighted_score == 4

    await eventually(applied)
    assert dict((await ideas.get(idea.id)).voters_by_tier) == {"core": 2}


async def test_orders_top_trending_newest_and_most_discussed(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    a = await ideas.submit(product.id, "Idea alpha")
    b = await ideas.submit(product.id, "Idea bravo")
    c = await ideas.submit(product.id, "Idea charlie")
    await ideas.feed_tally(a.id, 1, 10, trending=1.0)
    await ideas.feed_tally(b.id, 1, 30, trending=0.5)
    await ideas.feed_tally(c.id, 1, 20, trending=3.0)
    for body in ("one", "two"):
        await ideas.api.AddComment(pb.AddCommentRequest(idea_id=a.id, body=body), metadata=BOB)
    await ideas.api.AddComment(pb.AddCommentRequest(idea_id=c.id, body="hm"), metadata=BOB)

    async def tallied() -> bool:
        return await ideas.handled_tallies() == 3

    await eventually(tallied)

    async def order(kind: int) -> list[str]:
        found = await ideas.list_all(pb.ListIdeasRequest(order=kind, page_size=2))  # type: ignore[arg-type]
        return [i.id for i in found]

    assert await order(pb.IDEA_ORDER_TOP) == [b.id, c.id, a.id]
    assert await order(pb.IDEA_ORDER_TRENDING) == [c.id, a.id, b.id]
    assert await order(pb.IDEA_ORDER_NEWEST) == [c.id, b.id, a.id]
    assert await order(pb.IDEA_ORDER_UNSPECIFIED) == [c.id, b.id, a.id]
    assert await order(pb.IDEA_ORDER_MOST_DISCUSSED) == [a.id, c.id, b.id]


async def test_a_thousand_equal_scores_page_with_each_idea_exactly_once(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    async with ideas.service.runtime.pool.acquire() as conn:
        await conn.execute(
            """
            with idea as (
                insert into ideas (id, product_id, title, status, author_id, comment_count)
                select gen_random_uuid(), $1::uuid, 'Same idea ' || n, 1, 'm' || (n % 7), 2
                from generate_series(1, 1000) n
                returning id, product_id
            )
            insert into idea_tallies (idea_id, product_id, weighted_score, trending_score)
            select id, product_id, 5, 1.25 from idea
            """,
            product.id,
        )
    for kind in (pb.IDEA_ORDER_TOP, pb.IDEA_ORDER_TRENDING, pb.IDEA_ORDER_MOST_DISCUSSED):
        found = await ideas.list_all(pb.ListIdeasRequest(order=kind, page_size=37))
        ids = [i.id for i in found]
        assert len(ids) == 1000 and len(set(ids)) == 1000, kind
        assert ids == sorted(ids, reverse=True)  # ties broken by id
    newest = await ideas.list_all(pb.ListIdeasRequest(page_size=100))
    assert [i.number for i in newest] == sorted((i.number for i in newest), reverse=True)
    assert len({i.id for i in newest}) == 1000


async def test_filters_by_product_statuses_tag_author_and_text(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    phone, watch = await ideas.product(), await ideas.product()
    battery = await ideas.submit(phone.id, "Longer battery life", tags=["battery"])
    camera = await ideas.submit(phone.id, "Camera night mode", body="Better in 50% light_")
    chinese = await ideas.submit(phone.id, "如何提高电池续航", who=BOB)
    strap = await ideas.submit(watch.id, "Softer strap", tags=["battery"])
    await ideas.status(camera.id, IDEA_STATUS_UNDER_REVIEW)
    await ideas.status(strap.id, IDEA_STATUS_DECLINED)

    async def ids(**filters: object) -> set[str]:
        found = await ideas.list_all(pb.ListIdeasRequest(filter=pb.IdeaFilter(**filters)))  # type: ignore[arg-type]
        return {i.id for i in found}

    assert await ids(product_id=phone.id) == {battery.id, camera.id, chinese.id}
    assert await ids(statuses=[IDEA_STATUS_UNDER_REVIEW, IDEA_STATUS_DECLINED]) == {
        camera.id,
        strap.id,
    }
    assert await ids(statuses=[IDEA_STATUS_OPEN]) == {battery.id, chinese.id}
    assert await ids(tag="Battery") == {battery.id, strap.id}
    assert await ids(author_id="bob") == {chinese.id}
    assert await ids(query="电池") == {chinese.id}
    assert await ids(query="NIGHT") == {camera.id}
    assert await ids(query="50%") == {camera.id}
    assert await ids(query="0% l") == {camera.id}
    assert await ids(query="%") == {camera.id}
    assert await ids(query="_") == {camera.id}


async def test_hidden_ideas_are_gone_for_members_but_kept_for_pms(platform: Platform) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    kept = await ideas.submit(product.id, "A real idea")
    spam = await ideas.submit(product.id, "Buy cheap watches now", who=BOB)
    await ideas.api.HideIdea(
        pb.HideIdeaRequest(idea_id=spam.id, reason="spam", spam=True), metadata=PM
    )

    members_see = await ideas.list_all(pb.ListIdeasRequest())
    assert [i.id for i in members_see] == [kept.id]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.get(spam.id, who=ALICE)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ListIdeas(
            pb.ListIdeasRequest(filter=pb.IdeaFilter(include_hidden=True)), metadata=ALICE
        )
    assert violated_fields(caught.value) == {"filter.include_hidden"}

    pm_sees = await ideas.list_all(
        pb.ListIdeasRequest(filter=pb.IdeaFilter(include_hidden=True)), who=PM
    )
    assert {i.id for i in pm_sees} == {kept.id, spam.id}
    hidden = await ideas.get(spam.id, who=PM)
    assert hidden.hidden and hidden.hidden_reason == "spam"


async def test_page_tokens_are_bound_to_their_filter_and_sizes_are_checked(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    for n in range(3):
        await ideas.submit(product.id, f"Idea number {n}")
    page = await ideas.api.ListIdeas(pb.ListIdeasRequest(page_size=2), metadata=ALICE)
    assert len(page.ideas) == 2 and page.next_page_token
    for request in (
        pb.ListIdeasRequest(page_size=2, page_token=page.next_page_token, order=pb.IDEA_ORDER_TOP),
        pb.ListIdeasRequest(page_token="bm90LWEtdG9rZW4"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.ListIdeas(request, metadata=ALICE)
        assert violated_fields(caught.value) == {"page_token"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ListIdeas(pb.ListIdeasRequest(page_size=-1), metadata=ALICE)
    assert violated_fields(caught.value) == {"page_size"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ListIdeas(
            pb.ListIdeasRequest(filter=pb.IdeaFilter(statuses=[99], product_id="x")),  # type: ignore[list-item]
            metadata=ALICE,
        )
    assert violated_fields(caught.value) == {"filter.statuses[0]", "filter.product_id"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ListIdeas(
            pb.ListIdeasRequest(filter=pb.IdeaFilter(query="a\x00", tag="\x00", author_id="\x00")),
            metadata=ALICE,
        )
    assert violated_fields(caught.value) == {"filter.query", "filter.tag", "filter.author_id"}
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.ListIdeas(pb.ListIdeasRequest(order=42), metadata=ALICE)  # type: ignore[arg-type]
    assert violated_fields(caught.value) == {"order"}
