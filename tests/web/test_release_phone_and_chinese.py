"""The web app in a real browser, the other half: a PM plans an idea into an
iteration and cuts the release, whose notes anyone can read; the interface in
Chinese on a phone-sized screen, switched to English; a Chinese draft finds
its Chinese duplicate; mistakes answered in words; 64-bit numbers exact."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from services.kit import auth, config
from tests.web.conftest import NewPage, Stack, screenshot_path
from tests.web.test_community_flow import IDEAS, rpc, sign_in


async def product_with_ideas(stack: Stack, *titles: str) -> tuple[str, list[str]]:
    product = await rpc(stack, f"{IDEAS}.CreateProduct", {"name": "Phone OS"}, "admin-1", "admin")
    product_id = product["product"]["id"]
    ids = []
    for title in titles:
        params = {"productId": product_id, "title": title}
        ids.append((await rpc(stack, f"{IDEAS}.SubmitIdea", params, "bob", "member"))["idea"]["id"])
    return product_id, ids


async def fits_the_screen(page: Page) -> bool:
    width: bool = await page.evaluate(
        "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
    )
    return width


async def test_a_pm_plans_and_cuts_a_release_whose_notes_are_public(
    stack: Stack, new_page: NewPage
) -> None:
    product_id, (idea_id, _) = await product_with_ideas(
        stack, "Widgets on the lock screen", "Smaller keyboard"
    )
    pm = await new_page()
    await sign_in(pm, stack, "pm-1", "pm")
    await pm.goto(f"{stack.url}/#/p/{product_id}/releases")
    planning = pm.locator("#planning")
    week = await planning.get_by_label("New iteration (ISO week or name)").input_value()
    assert re.fullmatch(r"\d{4}-W\d{2}", week)
    await planning.get_by_role("button", name="Create").click()
    await expect(pm.locator(f'article[data-iteration="{week}"]')).to_be_visible()

    # Planning an open idea moves it along the workflow to planned.
    await pm.goto(f"{stack.url}/#/i/{idea_id}")
    await pm.get_by_label("Plan into iteration").select_option(label=week)
    await pm.get_by_role("button", name="Plan", exact=True).click()
    await expect(pm.locator("#triage")).to_contain_text("Status: planned")

    await pm.goto(f"{stack.url}/#/p/{product_id}/releases")
    iteration = pm.locator(f'article[data-iteration="{week}"]')
    await expect(iteration).to_contain_text("Widgets on the lock screen")
    # Keyboard only: focus the checkbox and press space.
    await iteration.get_by_label("done").focus()
    await pm.keyboard.press("Space")
    await expect(iteration.get_by_label("done")).to_be_checked()
    await expect(iteration.get_by_label("done")).to_be_enabled()
    await iteration.get_by_label("Version").fill("2.0")
    await iteration.get_by_role("button", name="Cut the release").click()
    await expect(pm.locator("h1")).to_have_text("Release notes 2.0")
    await expect(pm.locator("main")).to_contain_text("Widgets on the lock screen")
    await expect(pm.locator("#thanks")).to_contain_text("bob: 1 ideas shipped")
    notes_url = pm.url

    # Anyone reads the notes and the releases of a board, without signing in.
    visitor = await new_page()
    await visitor.goto(notes_url)
    await expect(visitor.locator("h1")).to_have_text("Release notes 2.0")
    await visitor.goto(f"{stack.url}/#/p/{product_id}/releases")
    await expect(visitor.locator("#releases")).to_contain_text(f"2.0 · {week}")
    await expect(visitor.locator("#planning")).to_have_count(0)
    await visitor.goto(f"{stack.url}/#/i/{idea_id}")
    await expect(visitor.locator("h1 + .meta .chip").first).to_have_text("shipped")
    await expect(visitor.locator("#triage")).to_have_count(0)


async def test_chinese_on_a_phone_with_errors_in_words(stack: Stack, new_page: NewPage) -> None:
    product_id, _ = await product_with_ideas(stack, "锁屏界面的深色模式", "Battery saver")
    phone = await new_page(locale="zh-CN", phone=True)
    await phone.goto(stack.url + "/")
    await expect(phone.locator("h1")).to_have_text("产品")
    await phone.get_by_role("link", name="Phone OS").click()
    top = phone.get_by_role("button", name="最高票")
    await expect(top).to_have_attribute("aria-pressed", "true")
    await expect(phone.locator("#ideas")).to_contain_text("锁屏界面的深色模式")
    assert await fits_the_screen(phone)
    await phone.screenshot(path=screenshot_path("board-phone-zh"), full_page=True)

    # Development sign-in, in Chinese; then a Chinese draft finds its duplicate.
    await phone.goto(stack.url + "/#/signin")
    await phone.get_by_label("成员 id").fill("li-lei")
    await phone.get_by_role("button", name="登录", exact=True).click()
    await expect(phone.locator("#who")).to_contain_text("已登录：li-lei")
    await phone.goto(f"{stack.url}/#/p/{product_id}/submit")
    await phone.get_by_label("标题").press_sequentially("锁屏深色模式")
    await expect(phone.locator("#similar")).to_contain_text("锁屏界面的深色模式")
    assert await fits_the_screen(phone)

    # Switched to English, the same page speaks English and remembers it.
    await phone.get_by_role("button", name="将界面切换为英文").click()
    await expect(phone.locator("h1")).to_have_text("Submit an idea")
    await phone.reload()
    await expect(phone.locator("h1")).to_have_text("Submit an idea")

    # A title the platform refuses is explained, with the field it names.
    await phone.get_by_label("Title").fill("ab")
    await phone.get_by_role("button", name="Submit").click()
    alert = phone.locator("#submit-form [role=alert]")
    await expect(alert).to_contain_text("Please check the input")
    await expect(alert).to_contain_text("title")

    # An unknown idea is a page that says so, not a blank one.
    await phone.goto(stack.url + "/#/i/00000000-0000-4000-8000-000000000000")
    await expect(phone.locator("main [role=alert]")).to_contain_text("Not found")

    # 64-bit numbers are shown exactly (a JavaScript number would round them).
    shown = await phone.evaluate(
        "import('./assets/format.js').then((f) => f.num('9007199254740993'))"
    )
    assert shown == "9,007,199,254,740,993"


async def test_a_token_handed_over_in_the_fragment_signs_in_and_leaves_no_trace(
    stack: Stack, new_page: NewPage
) -> None:
    """The production hand-off: the community's sign-in sends the person to
    /#token=<jwt>&next=<route>; the page keeps the token and takes it out of
    the address bar and the history."""
    token = auth.mint_token("carol", "member", config.DEV_JWT_SECRET)
    page = await new_page()
    await page.goto(f"{stack.url}/#token={token}&next=%23%2Fnotifications")
    await expect(page.locator("#who")).to_contain_text("Signed in as carol")
    await expect(page.locator("h1")).to_have_text("Notifications")
    assert page.url == f"{stack.url}/#/notifications"
    assert token not in await page.evaluate("location.href + history.state")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("link", name="Sign in", exact=True)).to_be_visible()


async def test_a_long_board_pages_on_request(stack: Stack, new_page: NewPage) -> None:
    titles = [f"Idea number {n:02d}" for n in range(25)]
    product = await rpc(stack, f"{IDEAS}.CreateProduct", {"name": "Long"}, "admin-1", "admin")
    product_id = product["product"]["id"]
    for n, title in enumerate(titles):
        # Members may submit 10 ideas an hour each.
        params = {"productId": product_id, "title": title}
        await rpc(stack, f"{IDEAS}.SubmitIdea", params, f"author-{n // 10}", "member")
    visitor = await new_page()
    await visitor.goto(f"{stack.url}/#/p/{product_id}?order=newest")
    await expect(visitor.get_by_role("button", name="New")).to_have_attribute(
        "aria-pressed", "true"
    )
    ideas = visitor.locator("#ideas li")
    await expect(ideas).to_have_count(20)
    await expect(ideas.first).to_contain_text("Idea number 24")
    await visitor.get_by_role("button", name="Show more").click()
    await expect(ideas).to_have_count(25)
    await expect(ideas.last).to_contain_text("Idea number 00")
    await expect(visitor.get_by_role("button", name="Show more")).to_be_hidden()
