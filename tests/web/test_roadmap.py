"""The roadmap of a product in a real browser: a visitor, without signing in,
finds each idea under the heading of its status after a PM moved it — planned,
in progress, shipped (newest first) — and reads it in Chinese too."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import NewPage, Stack, screenshot_path
from tests.web.test_community_flow import IDEAS, rpc
from tests.web.test_release_phone_and_chinese import product_with_ideas

STEPS = ["UNDER_REVIEW", "PLANNED", "IN_PROGRESS", "SHIPPED"]


async def move(stack: Stack, idea_id: str, to: str) -> None:
    """Along the workflow, one step at a time, as a PM."""
    for step in STEPS[: STEPS.index(to) + 1]:
        params = {"ideaId": idea_id, "status": f"IDEA_STATUS_{step}"}
        await rpc(stack, f"{IDEAS}.ChangeIdeaStatus", params, "pm-1", "pm")


async def test_a_visitor_sees_each_idea_under_its_status(stack: Stack, new_page: NewPage) -> None:
    product_id, (planned, started, shipped_first, shipped_last, _open) = await product_with_ideas(
        stack,
        "Widgets on the lock screen",
        "Smaller keyboard",
        "Dark mode",
        "Battery saver",
        "Left-handed layout",
    )
    await move(stack, planned, "PLANNED")
    await move(stack, started, "IN_PROGRESS")
    await move(stack, shipped_first, "SHIPPED")
    await move(stack, shipped_last, "SHIPPED")

    visitor = await new_page()
    await visitor.goto(f"{stack.url}/#/p/{product_id}")
    await visitor.get_by_role("link", name="Roadmap").click()
    await expect(visitor.locator("h1")).to_have_text("Roadmap: Phone OS")
    planned_column = visitor.get_by_role("region", name="Planned")
    progress_column = visitor.get_by_role("region", name="In progress")
    shipped_column = visitor.get_by_role("region", name="Shipped")
    await expect(planned_column.locator("li a")).to_have_text(["Widgets on the lock screen"])
    await expect(progress_column.locator("li")).to_have_count(1)
    await expect(progress_column).to_contain_text("Smaller keyboard")
    # Shipped: the latest ship first.
    await expect(shipped_column.locator("li a")).to_have_text(["Battery saver", "Dark mode"])
    await expect(visitor.locator("#roadmap")).not_to_contain_text("Left-handed layout")
    await visitor.screenshot(path=screenshot_path("roadmap"), full_page=True)

    # A PM moves the planned idea on; the roadmap follows.
    params = {"ideaId": planned, "status": "IDEA_STATUS_IN_PROGRESS"}
    await rpc(stack, f"{IDEAS}.ChangeIdeaStatus", params, "pm-1", "pm")
    await visitor.reload()
    await expect(progress_column.locator("li a")).to_have_count(2)
    await expect(progress_column).to_contain_text("Widgets on the lock screen")
    await expect(planned_column).to_contain_text("Nothing here yet.")

    # In Chinese, on a phone.
    phone = await new_page(locale="zh-CN", phone=True)
    await phone.goto(f"{stack.url}/#/p/{product_id}/roadmap")
    await expect(phone.get_by_role("region", name="进行中")).to_contain_text("Smaller keyboard")
    await expect(phone.get_by_role("region", name="已发布")).to_contain_text("Battery saver")
