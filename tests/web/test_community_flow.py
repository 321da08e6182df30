"""The web app in a real browser against the real platform: a visitor reads a
board without signing in; a member signs in, submits an idea and is shown a
similar one while typing, supports it and sees the score move at once, sees
her points arrive; a PM moves it along to shipped; the member's open
notifications page shows the news as it happens."""

from __future__ import annotations

import re
from typing import Any

import aiohttp
from playwright.async_api import Page, expect

from services.kit import auth, config
from tests.web.conftest import NewPage, Stack, screenshot_path

IDEAS = "cocreate.ideas.v1.IdeaService"
# Long enough for an event to travel service → NATS → service on a busy machine.
SETTLE_MS = 30_000


async def rpc(stack: Stack, method: str, params: dict[str, Any], member: str, role: str) -> Any:
    token = auth.mint_token(member, role, config.DEV_JWT_SECRET)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            stack.url + "/rpc",
            json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
            headers={"Authorization": f"Bearer {token}"},
        ) as answer,
    ):
        reply = await answer.json()
    assert "result" in reply, reply
    return reply["result"]


async def seed(stack: Stack) -> dict[str, str]:
    """A product with four ideas by other members, some supported."""
    product = (
        await rpc(stack, f"{IDEAS}.CreateProduct", {"name": "Phone OS"}, "admin-1", "admin")
    )["product"]
    ids = {"product": product["id"]}
    for key, title, body in [
        ("launcher", "Dark mode for the launcher", "The launcher is far too bright at night."),
        ("battery", "Battery saver on a schedule", "Turn it on every evening by itself."),
        ("gestures", "Custom gestures for the camera", ""),
        ("widgets", "小组件可以调整大小", "桌面小组件希望支持自由调整大小。"),
    ]:
        idea = await rpc(
            stack,
            f"{IDEAS}.SubmitIdea",
            {"productId": product["id"], "title": title, "body": body},
            "bob",
            "member",
        )
        ids[key] = idea["idea"]["id"]
    cast = "cocreate.votes.v1.VoteService.CastVote"
    for member, idea in [
        ("bob", "launcher"),
        ("carol", "launcher"),
        ("dave", "launcher"),
        ("carol", "widgets"),
        ("dave", "gestures"),
    ]:
        await rpc(stack, cast, {"ideaId": ids[idea]}, member, "member")
    await rpc(
        stack,
        "cocreate.rewards.v1.RewardsService.CreateCatalogueItem",
        {"name": "Sticker pack", "price": "5", "stock": "100"},
        "admin-1",
        "admin",
    )
    return ids


async def sign_in(page: Page, stack: Stack, member: str, role: str) -> None:
    await page.goto(stack.url + "/#/signin")
    await page.get_by_label("Member id").fill(member)
    await page.get_by_label("Role").select_option(role)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#who")).to_contain_text(f"Signed in as {member}")


async def until_shown(page: Page, show: str, locator: str, pattern: re.Pattern[str]) -> None:
    """Opens `show` again until `locator` matches (the account page shows what
    the platform has when it is opened), within the deadline."""
    deadline = SETTLE_MS
    step = 1_000
    while True:
        await page.goto(show)
        try:
            await expect(page.locator(locator)).to_have_text(pattern, timeout=step)
            return
        except AssertionError:
            deadline -= step
            if deadline <= 0:
                raise


async def test_visitor_member_and_pm_in_a_real_browser(stack: Stack, new_page: NewPage) -> None:
    ids = await seed(stack)
    board_url = f"{stack.url}/#/p/{ids['product']}"

    # A visitor reads the board: no sign-in, the ideas with score and voters.
    visitor = await new_page()
    await visitor.goto(stack.url + "/")
    await visitor.get_by_role("link", name="Phone OS").click()
    launcher = visitor.locator(f'li[data-idea="{ids["launcher"]}"]')
    await expect(launcher.locator(".score")).to_have_text("3", timeout=SETTLE_MS)
    await expect(launcher).to_contain_text("3 voters")
    await expect(visitor.locator("#ideas li")).to_have_count(4)
    await expect(visitor.get_by_role("link", name="Sign in", exact=True)).to_be_visible()
    await visitor.get_by_label("Search ideas").fill("battery")
    await expect(visitor.locator("#ideas li")).to_have_count(1)
    await expect(visitor.locator("#ideas")).to_contain_text("Battery saver on a schedule")
    await visitor.get_by_label("Search ideas").fill("")
    await expect(visitor.locator("#ideas li")).to_have_count(4)
    await expect(visitor.locator("#ideas li").first).to_have_attribute("data-idea", ids["launcher"])
    await visitor.get_by_label("Search ideas").blur()
    await visitor.screenshot(path=screenshot_path("board"), full_page=True)

    # A member signs in and submits; a similar idea is suggested while typing.
    alice = await new_page()
    await sign_in(alice, stack, "alice", "member")
    await alice.goto(board_url)
    await alice.get_by_role("link", name="Submit an idea").click()
    await alice.get_by_label("Title").press_sequentially("Dark mode for the lock screen")
    await expect(alice.locator("#similar")).to_contain_text("Dark mode for the launcher")
    await alice.get_by_label("Details").fill("White at 3 am is painful.")
    await alice.get_by_role("button", name="Submit").click()
    await expect(alice.locator("h1")).to_have_text("Dark mode for the lock screen")
    idea_url = alice.url
    idea_id = idea_url.rsplit("/", 1)[1]

    # She supports it: the score moves at once, and stays when the tally lands.
    await expect(alice.locator("#score")).to_have_text("0")
    await alice.get_by_role("button", name="Support this idea").click()
    await expect(alice.locator("#score")).to_have_text("1")
    await expect(alice.locator("#voters")).to_have_text("1 voter")
    await expect(alice.locator("#support")).to_have_attribute("aria-pressed", "true")
    await expect(alice.locator("#tally-note")).to_have_text("", timeout=SETTLE_MS)
    await expect(alice.locator("#score")).to_have_text("1")
    await alice.reload()
    await expect(alice.locator("#score")).to_have_text("1")
    await expect(alice.locator("#support")).to_have_attribute("aria-pressed", "true")
    # The board says which ideas she supports (one ListMyVotes call per page).
    await alice.goto(board_url)
    mine = alice.locator(f'li[data-idea="{idea_id}"]')
    await expect(mine).to_contain_text("✓ you support it")
    await expect(alice.locator(f'li[data-idea="{ids["launcher"]}"]')).not_to_contain_text("✓")

    # Her points arrive: 5 for the idea, 1 for the vote.
    await until_shown(alice, stack.url + "/#/me", "#balance", re.compile(r"^6$"))
    await expect(alice.locator("#statement")).to_contain_text("+5")
    await expect(alice.locator("#catalogue")).to_contain_text("Sticker pack")

    # She keeps her notifications open while a PM works.
    await alice.goto(stack.url + "/#/notifications")
    await expect(alice.get_by_role("heading", name="Notifications")).to_be_visible()

    pm = await new_page()
    await sign_in(pm, stack, "pm-1", "pm")
    await pm.goto(idea_url)
    triage = pm.locator("#triage")
    for step in ("under review", "planned", "in progress"):
        await triage.get_by_role("button", name=f"→ {step}").click()
        await expect(triage).to_contain_text(f"Status: {step}")
    await pm.get_by_label("Your comment").fill("Coming with the 2.0 update, thank you!")
    await pm.get_by_label("Official response").check()
    await pm.get_by_role("button", name="Send").click()
    await expect(pm.locator("#comments li.official")).to_contain_text("Coming with the 2.0")
    await triage.get_by_label("Note for the history (optional)").fill("In the 2.0 update")
    await triage.screenshot(path=screenshot_path("triage"))
    await pm.screenshot(path=screenshot_path("triage-page"), full_page=True)
    await triage.get_by_role("button", name="→ shipped").click()
    await expect(pm.locator("h1 + .meta .chip").first).to_have_text("shipped")
    history = pm.locator("#history")
    await expect(history).to_contain_text("pm-1 moved it from in progress to shipped")

    # The member's page, untouched since, shows the news as it happens.
    shipped = alice.locator("#notification-list li", has_text="has shipped: In the 2.0 update")
    await expect(shipped).to_be_visible(timeout=SETTLE_MS)
    await expect(shipped.get_by_role("link")).to_have_attribute("href", f"#/i/{idea_id}")
    await expect(alice.locator("#unread")).not_to_have_text("0")
    await alice.get_by_role("button", name="Mark all read").click()
    await expect(alice.locator("#unread")).to_be_hidden()
    await alice.screenshot(path=screenshot_path("notifications"), full_page=True)

    # The idea as everyone sees it now: shipped, with the official response.
    await alice.goto(idea_url)
    await expect(alice.locator("section.official")).to_contain_text("Coming with the 2.0 update")
    await expect(alice.locator("#support")).to_have_text("You supported it ✓ (closed for votes)")
    await expect(alice.locator("#support")).to_be_disabled()
    await alice.screenshot(path=screenshot_path("idea"), full_page=True)
