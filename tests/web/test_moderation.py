"""Moderation in a real browser: a member reports an idea, a PM finds it in
the queue and hides it — gone for visitors, still there for PMs who ask —
unhides it, and merges a duplicate into it."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import NewPage, Stack
from tests.web.test_community_flow import IDEAS, rpc, sign_in


async def test_report_hide_unhide_and_merge(stack: Stack, new_page: NewPage) -> None:
    product = await rpc(stack, f"{IDEAS}.CreateProduct", {"name": "Phone OS"}, "admin-1", "admin")
    product_id = product["product"]["id"]
    ids = []
    for title in ("Buy cheap followers here", "Split screen for two apps", "Split-screen mode"):
        params = {"productId": product_id, "title": title}
        ids.append((await rpc(stack, f"{IDEAS}.SubmitIdea", params, "bob", "member"))["idea"]["id"])
    spam, target, duplicate = ids
    board = f"{stack.url}/#/p/{product_id}"

    member = await new_page()
    await sign_in(member, stack, "alice", "member")
    await member.goto(f"{stack.url}/#/i/{spam}")
    await member.get_by_role("button", name="Report as spam").click()
    await expect(member.locator("main")).to_contain_text("Reported. Thank you")

    pm = await new_page()
    await sign_in(pm, stack, "pm-1", "pm")
    await pm.goto(board)
    await pm.get_by_role("link", name="Moderation queue").click()
    await expect(pm.locator("#reported")).to_contain_text("Buy cheap followers here")
    await expect(pm.locator("#reported")).to_contain_text("1 reports")
    await pm.get_by_role("link", name="Buy cheap followers here").click()
    triage = pm.locator("#triage")
    await triage.get_by_role("button", name="Hide").click()
    # A reason is required, and the refusal says so.
    await expect(triage.get_by_role("alert")).to_contain_text("reason")
    await triage.get_by_label("Reason").fill("selling followers")
    await triage.get_by_label("as spam").check()
    await triage.get_by_role("button", name="Hide").click()
    await expect(pm.locator("h1 + .meta")).to_contain_text("hidden")

    visitor = await new_page()
    await visitor.goto(board)
    await expect(visitor.locator("#ideas li")).to_have_count(2)
    await visitor.goto(f"{stack.url}/#/i/{spam}")
    await expect(visitor.locator("main [role=alert]")).to_contain_text("Not found")

    await pm.goto(board)
    await expect(pm.locator("#ideas li")).to_have_count(2)
    await pm.get_by_label("Show hidden ideas").check()
    await expect(pm.locator("#ideas li")).to_have_count(3)
    await expect(pm.locator(f'li[data-idea="{spam}"]')).to_contain_text("hidden")

    await pm.goto(f"{stack.url}/#/i/{spam}")
    await triage.get_by_label("Reason").fill("a mistake")
    # exact: "Unhide" holds "hide", and would match at once.
    await triage.get_by_role("button", name="Unhide").click()
    await expect(triage.get_by_role("button", name="Hide", exact=True)).to_be_visible()
    await visitor.goto(board)
    await expect(visitor.locator("#ideas li")).to_have_count(3)

    # The duplicate goes into the idea it repeats, named by its number.
    target_number = (await rpc(stack, f"{IDEAS}.GetIdea", {"ideaId": target}, "pm-1", "pm"))[
        "idea"
    ]["number"]
    await pm.goto(f"{stack.url}/#/i/{duplicate}")
    await triage.get_by_label("Merge into idea (number or id)").fill(f"#{target_number}")
    await triage.get_by_role("button", name="Merge").click()
    await expect(pm.locator("h1 + .meta .chip").first).to_have_text("merged")
    await pm.get_by_role("link", name=target).click()
    await expect(pm.locator("h1")).to_have_text("Split screen for two apps")
    await expect(pm.locator("#history")).to_contain_text("pm-1 merged a duplicate into it")
