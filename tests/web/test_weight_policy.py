"""The weight policy in a real browser: an admin reads the tier → weight table
and changes it; a change based on an old version, or a weight out of range, is
refused in words; a PM reads it but is not offered the change."""

from __future__ import annotations

from playwright.async_api import expect

from tests.web.conftest import NewPage, Stack
from tests.web.test_community_flow import rpc, sign_in

VOTES = "cocreate.votes.v1.VoteService"


async def test_an_admin_changes_the_weights(stack: Stack, new_page: NewPage) -> None:
    before = (await rpc(stack, f"{VOTES}.GetWeightPolicy", {}, "admin-1", "admin"))["policy"]
    tiers = sorted(before["weights"])
    assert len(tiers) >= 2
    tier = tiers[-1]

    admin = await new_page()
    await sign_in(admin, stack, "admin-1", "admin")
    await admin.get_by_role("link", name="Vote weights").click()
    await expect(admin.locator("h1")).to_have_text("Vote weights")
    weight = admin.get_by_label(tier, exact=True)
    await expect(weight).to_have_value(str(before["weights"][tier]))
    await expect(admin.locator("#policy-version")).to_contain_text(f"Version {before['version']}")

    await weight.fill("7")
    await admin.get_by_role("button", name="Save the weights").click()
    version = int(before["version"]) + 1
    await expect(admin.get_by_role("status")).to_contain_text(f"Saved as version {version}")
    await expect(admin.get_by_label(tier, exact=True)).to_have_value("7")
    after = (await rpc(stack, f"{VOTES}.GetWeightPolicy", {}, "admin-1", "admin"))["policy"]
    assert after["weights"][tier] == 7

    # Someone else changes it meanwhile: this page's save is refused, not applied.
    changed = {**after["weights"], tier: 9}
    await rpc(stack, f"{VOTES}.UpdateWeightPolicy", {"weights": changed}, "admin-2", "admin")
    await admin.get_by_label(tier, exact=True).fill("8")
    await admin.get_by_role("button", name="Save the weights").click()
    alert = admin.locator("#weights-form [role=alert]")
    await expect(alert).to_contain_text("A conflict, try again")
    await expect(alert).to_contain_text(f"not {version}")
    now = (await rpc(stack, f"{VOTES}.GetWeightPolicy", {}, "admin-1", "admin"))["policy"]
    assert now["weights"][tier] == 9

    # Read again, a weight out of range is explained with the field it names.
    await admin.reload()
    await admin.get_by_label(tier, exact=True).fill("0")
    await admin.get_by_role("button", name="Save the weights").click()
    await expect(alert).to_contain_text("Please check the input")

    pm = await new_page()
    await sign_in(pm, stack, "pm-1", "pm")
    await pm.goto(f"{stack.url}/#/admin/weights")
    await expect(pm.get_by_label(tier, exact=True)).to_have_value("9")
    await expect(pm.get_by_label(tier, exact=True)).to_be_disabled()
    await expect(pm.get_by_role("button", name="Save the weights")).to_have_count(0)
