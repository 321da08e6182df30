"""The export download in a real browser: a PM downloads the board's current
filter as CSV and as Markdown, built in the page from the streamed ExportIdeas;
a member is not offered it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from playwright.async_api import Download, expect

from tests.web.conftest import NewPage, Stack
from tests.web.test_community_flow import IDEAS, rpc, sign_in
from tests.web.test_release_phone_and_chinese import product_with_ideas

COLUMNS = ["number", "title", "status", "score", "voters", "comments"]
COLUMNS += ["author", "created", "tags", "id"]


def read(path: Path, encoding: str) -> str:
    """A downloaded file's text (small: read at once)."""
    return path.read_text(encoding=encoding)


async def text_of(download: Download, encoding: str = "utf-8") -> str:
    return read(Path(await download.path()), encoding)


async def test_a_pm_downloads_the_filtered_board_as_csv_and_markdown(
    stack: Stack, new_page: NewPage
) -> None:
    product_id, (review, quoted, chinese, _other) = await product_with_ideas(
        stack,
        "Widgets on the lock screen",
        'A "quoted", comma title',
        "锁屏界面的深色模式",
        "Smaller keyboard",
    )
    for idea_id in (review, quoted, chinese):
        params = {"ideaId": idea_id, "status": "IDEA_STATUS_UNDER_REVIEW"}
        await rpc(stack, f"{IDEAS}.ChangeIdeaStatus", params, "pm-1", "pm")
    await rpc(
        stack, "cocreate.votes.v1.VoteService.CastVote", {"ideaId": review}, "carol", "member"
    )

    pm = await new_page()
    await sign_in(pm, stack, "pm-1", "pm")
    await pm.goto(f"{stack.url}/#/p/{product_id}?status=IDEA_STATUS_UNDER_REVIEW&order=newest")
    await expect(pm.locator("#ideas li")).to_have_count(3)
    exporting = pm.get_by_role("group", name="Download the ideas shown")

    async with pm.expect_download() as arriving:
        await exporting.get_by_role("button", name="CSV").click()
    download = await arriving.value
    assert download.suggested_filename.startswith("Phone-OS-")
    assert download.suggested_filename.endswith(".csv")
    text = await text_of(download, "utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == COLUMNS
    # The filter and order of the board: newest first, under review only.
    assert [row[1] for row in rows[1:]] == [
        "锁屏界面的深色模式",
        'A "quoted", comma title',
        "Widgets on the lock screen",
    ]
    assert {row[2] for row in rows[1:]} == {"under_review"}
    assert [row[9] for row in rows[1:]] == [chinese, quoted, review]
    assert rows[3][4] == "1" and rows[3][6] == "bob"
    await expect(exporting.get_by_role("status")).to_have_text("3 ideas downloaded.")

    async with pm.expect_download() as arriving:
        await exporting.get_by_role("button", name="Markdown").click()
    download = await arriving.value
    assert download.suggested_filename.endswith(".md")
    lines = (await text_of(download)).splitlines()
    assert lines[0] == "# Phone OS"
    header = lines.index(
        "| # | Title | Status | Score | Voters | Comments | Author | Submitted | Tags | Id |"
    )
    table = lines[header + 2 :]
    assert len(table) == 3
    assert table[0].startswith("| ") and "锁屏界面的深色模式 | under review |" in table[0]
    assert 'A "quoted", comma title' in table[1]

    member = await new_page()
    await sign_in(member, stack, "alice", "member")
    await member.goto(f"{stack.url}/#/p/{product_id}")
    await expect(member.locator("#ideas li")).to_have_count(4)
    await expect(member.locator("#export")).to_have_count(0)
