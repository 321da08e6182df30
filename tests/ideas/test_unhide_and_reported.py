"""Moderation follow-ups: unhiding an idea (back for members, recorded in the
history, no event) and the queue of reported ideas PMs work through."""

from __future__ import annotations

import grpc
import pytest
from cocreate.events.v1 import ideas_events_pb2 as events_pb
from cocreate.ideas.v1 import ideas_service_pb2 as pb

from tests.ideas.helpers import ADMIN, ALICE, BOB, PM, Ideas, start_ideas, unknown_id
from tests.support import Platform, error_reason, metadata, violated_fields


async def _outbox_size(ideas: Ideas) -> int:
    async with ideas.service.runtime.pool.acquire() as conn:
        count: int = await conn.fetchval("select count(*) from outbox")
        return count


async def _history(ideas: Ideas, idea_id: str) -> list[pb.IdeaHistoryEntry]:
    answer = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=idea_id), metadata=PM
    )
    return list(answer.entries)


async def _hidden_idea(ideas: Ideas, product_id: str) -> pb.Idea:
    idea = await ideas.submit(product_id, "Cheap pills here", who=BOB)
    await ideas.api.HideIdea(
        pb.HideIdeaRequest(idea_id=idea.id, reason="advertising", spam=True), metadata=PM
    )
    return idea


async def _report(ideas: Ideas, idea_id: str, reporters: int) -> None:
    for n in range(reporters):
        await ideas.api.ReportIdea(
            pb.ReportIdeaRequest(idea_id=idea_id, reason="spam"), metadata=metadata(f"m-{n}")
        )


async def test_members_are_refused_unhide_and_the_reported_list_before_any_lookup(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    calls = (
        ideas.api.UnhideIdea(
            pb.UnhideIdeaRequest(idea_id=unknown_id(), reason="fine after all"), metadata=ALICE
        ),
        ideas.api.UnhideIdea(pb.UnhideIdeaRequest(idea_id="nope"), metadata=ALICE),
        ideas.api.ListReportedIdeas(
            pb.ListReportedIdeasRequest(product_id=unknown_id()), metadata=ALICE
        ),
        ideas.api.ListReportedIdeas(pb.ListReportedIdeasRequest(page_size=-1), metadata=ALICE),
    )
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_unhide_with_bad_input_is_invalid_argument_and_changes_nothing(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await _hidden_idea(ideas, product.id)
    before = await _history(ideas, idea.id)
    for request, fields in (
        (pb.UnhideIdeaRequest(), {"idea_id", "reason"}),
        (pb.UnhideIdeaRequest(idea_id="nope", reason="ok"), {"idea_id"}),
        (pb.UnhideIdeaRequest(idea_id=idea.id, reason="   "), {"reason"}),
        (pb.UnhideIdeaRequest(idea_id=idea.id, reason="x" * 2001), {"reason"}),
        (pb.UnhideIdeaRequest(idea_id=idea.id, reason="nul \x00"), {"reason"}),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.UnhideIdea(request, metadata=PM)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(caught.value) == fields
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await ideas.api.UnhideIdea(
            pb.UnhideIdeaRequest(idea_id=unknown_id(), reason="ok"), metadata=PM
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND

    still = await ideas.get(idea.id)
    assert still.hidden and still.hidden_reason == "advertising"
    assert await _history(ideas, idea.id) == before


async def test_an_unhidden_idea_is_back_for_members_with_the_reason_in_its_history(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await _hidden_idea(ideas, product.id)
    assert idea.id not in [i.id for i in await ideas.list_all(pb.ListIdeasRequest())]
    events_before = await _outbox_size(ideas)

    answer = await ideas.api.UnhideIdea(
        pb.UnhideIdeaRequest(idea_id=idea.id, reason="  a real idea after all  "), metadata=ADMIN
    )
    assert (answer.idea.id, answer.idea.hidden, answer.idea.hidden_reason) == (idea.id, False, "")

    assert idea.id in [i.id for i in await ideas.list_all(pb.ListIdeasRequest())]
    assert (await ideas.get(idea.id, who=ALICE)).hidden is False
    last = (await _history(ideas, idea.id))[-1]
    assert (last.kind, last.actor_id, last.note) == (
        pb.IDEA_HISTORY_KIND_UNHIDDEN,
        "admin-1",
        "a real idea after all",
    )
    history = await ideas.api.ListIdeaHistory(
        pb.ListIdeaHistoryRequest(idea_id=idea.id), metadata=ALICE
    )
    assert history.entries[-1].kind == pb.IDEA_HISTORY_KIND_UNHIDDEN
    # One event, so the votes service takes votes on the idea again.
    assert await _outbox_size(ideas) == events_before + 1
    [(envelope, unhidden)] = await ideas.events(events_pb.IdeaUnhidden)
    assert (unhidden.idea_id, unhidden.actor_id, unhidden.reason) == (
        idea.id,
        "admin-1",
        "a real idea after all",
    )
    [(hide_envelope, _)] = await ideas.events(events_pb.IdeaHidden)
    assert envelope.aggregate_version > hide_envelope.aggregate_version


async def test_unhide_replays_its_request_id_and_refuses_a_visible_idea(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    idea = await _hidden_idea(ideas, product.id)
    request = pb.UnhideIdeaRequest(idea_id=idea.id, reason="appeal granted", request_id="u-1")
    first = await ideas.api.UnhideIdea(request, metadata=PM)
    again = await ideas.api.UnhideIdea(request, metadata=PM)
    assert again == first
    entries = await _history(ideas, idea.id)
    assert [e.kind for e in entries].count(pb.IDEA_HISTORY_KIND_UNHIDDEN) == 1

    visible = await ideas.submit(product.id, "Never hidden")
    for target in (idea.id, visible.id):  # a new call on a visible idea
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.UnhideIdea(
                pb.UnhideIdeaRequest(idea_id=target, reason="again"), metadata=PM
            )
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(caught.value) == "NOT_HIDDEN"
    assert await _history(ideas, idea.id) == entries
    assert [e.kind for e in await _history(ideas, visible.id)] == [pb.IDEA_HISTORY_KIND_SUBMITTED]


async def test_reported_ideas_come_most_reported_first_with_hidden_ones_flagged(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    other = await ideas.product()
    quiet = await ideas.submit(product.id, "Nobody minds this one")
    once = await ideas.submit(product.id, "Reported once")
    thrice = await ideas.submit(product.id, "Reported three times", who=BOB)
    tie_a = await ideas.submit(product.id, "Reported twice, first")
    tie_b = await ideas.submit(product.id, "Reported twice, second")
    elsewhere = await ideas.submit(other.id, "On another product")
    for idea, reporters in ((once, 1), (thrice, 3), (tie_a, 2), (tie_b, 2), (elsewhere, 4)):
        await _report(ideas, idea.id, reporters)
    await ideas.api.HideIdea(
        pb.HideIdeaRequest(idea_id=thrice.id, reason="advertising"), metadata=PM
    )

    answer = await ideas.api.ListReportedIdeas(
        pb.ListReportedIdeasRequest(product_id=product.id), metadata=PM
    )
    ties = sorted([tie_a.id, tie_b.id], reverse=True)
    assert [i.id for i in answer.ideas] == [thrice.id, *ties, once.id]
    assert [i.report_count for i in answer.ideas] == [3, 2, 2, 1]
    assert (answer.ideas[0].hidden, answer.ideas[0].hidden_reason) == (True, "advertising")
    assert not any(i.hidden for i in answer.ideas[1:])
    assert quiet.id not in [i.id for i in answer.ideas]
    assert answer.next_page_token == ""

    everywhere = await ideas.api.ListReportedIdeas(pb.ListReportedIdeasRequest(), metadata=ADMIN)
    assert [i.id for i in everywhere.ideas] == [elsewhere.id, thrice.id, *ties, once.id]


async def test_reported_ideas_page_with_each_idea_once_and_refuse_bad_input(
    platform: Platform,
) -> None:
    ideas = await start_ideas(platform)
    product = await ideas.product()
    submitted = []
    for n in range(7):
        idea = await ideas.submit(product.id, f"Reported idea {n}", who=metadata(f"author-{n}"))
        await _report(ideas, idea.id, 1 + n % 3)
        submitted.append(idea.id)

    whole = await ideas.api.ListReportedIdeas(pb.ListReportedIdeasRequest(), metadata=PM)
    request = pb.ListReportedIdeasRequest(page_size=2)
    paged: list[str] = []
    pages = 0
    while True:
        page = await ideas.api.ListReportedIdeas(request, metadata=PM)
        paged += [i.id for i in page.ideas]
        pages += 1
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert pages == 4
    assert paged == [i.id for i in whole.ideas]
    assert sorted(paged) == sorted(submitted)  # each idea exactly once

    first = await ideas.api.ListReportedIdeas(pb.ListReportedIdeasRequest(page_size=2), metadata=PM)
    for bad, fields in (
        (pb.ListReportedIdeasRequest(product_id="nope"), {"product_id"}),
        (pb.ListReportedIdeasRequest(page_size=-1), {"page_size"}),
        (pb.ListReportedIdeasRequest(page_token="forged"), {"page_token"}),
        (
            pb.ListReportedIdeasRequest(
                product_id=product.id, page_size=2, page_token=first.next_page_token
            ),
            {"page_token"},
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await ideas.api.ListReportedIdeas(bad, metadata=PM)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert violated_fields(caught.value) == fields
