"""The board's tag filter in a real browser: a visitor follows an idea's tag
to the ideas that carry it, the address keeps the filter, and the tag field
narrows the board as it is typed."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import NewPage, Stack
from tests.web.test_community_flow import IDEAS, rpc


async def test_a_visitor_filters_the_board_by_tag(stack: Stack, new_page: NewPage) -> None:
    product = await rpc(stack, f"{IDEAS}.CreateProduct", {"name": "Camera app"}, "admin-1", "admin")
    product_id = product["product"]["id"]
    for title, tags in (
        ("Night mode for video", ["camera", "video"]),
        ("Burst shots", ["camera"]),
        ("Offline maps", ["maps"]),
    ):
        params = {"productId": product_id, "title": title, "tags": tags}
        await rpc(stack, f"{IDEAS}.SubmitIdea", params, "bob", "member")

    visitor = await new_page()
    await visitor.goto(f"{stack.url}/#/p/{product_id}")
    cards = visitor.locator("#ideas li.idea-card")
    await expect(cards).to_have_count(3)
    await (
        cards.filter(has_text="Night mode for video")
        .get_by_role("link", name="video", exact=True)
        .click()
    )
    await expect(cards).to_have_count(1)
    await expect(cards.first).to_contain_text("Night mode for video")
    await expect(visitor.locator("#tag-filter")).to_have_value("video")
    assert "tag=video" in visitor.url

    await visitor.locator("#tag-filter").fill("camera")
    await expect(cards).to_have_count(2)
    await expect(visitor.locator("#ideas")).not_to_contain_text("Offline maps")
    await visitor.locator("#tag-filter").fill("")
    await expect(cards).to_have_count(3)
