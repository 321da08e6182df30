"""The release cut and its notes, against the real ideas service: what ships,
what rolls over, the events it emits, and that a second cut changes nothing."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from cocreate.events.v1 import envelope_pb2, ideas_events_pb2
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import release_service_pb2 as rel_pb

from tests.releases.helpers import (
    PM,
    IdeasClients,
    cut,
    iteration_ideas,
    mark_done,
    new_iteration,
    new_product,
    plan,
    start_ideas,
    submit,
)
from tests.support import Platform, error_reason, metadata


@pytest.fixture
async def ideas(platform: Platform) -> IdeasClients:
    return await start_ideas(platform)


async def outbox_events(ideas: IdeasClients) -> list[envelope_pb2.Envelope]:
    rows = await ideas.service.runtime.pool.fetch("select envelope from outbox order by id")
    envelopes = []
    for row in rows:
        envelope = envelope_pb2.Envelope()
        envelope.ParseFromString(row["envelope"])
        envelopes.append(envelope)
    return envelopes


def payloads(
    envelopes: list[envelope_pb2.Envelope], kind: type[ideas_events_pb2.IdeaStatusChanged]
) -> list[ideas_events_pb2.IdeaStatusChanged]:
    found = []
    for envelope in envelopes:
        message = kind()
        if envelope.payload.Unpack(message):
            found.append(message)
    return found


async def week(ideas: IdeasClients) -> tuple[str, str, dict[str, str]]:
    """A product, its 2026-W48 iteration and four planned ideas: two done (one
    of them in progress), one not done, one declined after planning."""
    product = await new_product(ideas)
    iteration = await new_iteration(ideas, product, "2026-W48")
    titles = {
        "done": "Dark mode everywhere",
        "in_progress": "Faster fingerprint unlock",
        "not_done": "Battery saver schedule",
        "declined": "Remove the status bar",
    }
    ids = {
        key: await submit(ideas, product, f"author-{key}", title) for key, title in titles.items()
    }
    for idea_id in ids.values():
        await plan(ideas, iteration.id, idea_id)
    await ideas.ideas.ChangeIdeaStatus(
        ideas_pb.ChangeIdeaStatusRequest(
            idea_id=ids["in_progress"], status=status.IDEA_STATUS_IN_PROGRESS
        ),
        metadata=PM,
    )
    await ideas.ideas.ChangeIdeaStatus(
        ideas_pb.ChangeIdeaStatusRequest(
            idea_id=ids["declined"], status=status.IDEA_STATUS_DECLINED
        ),
        metadata=PM,
    )
    await mark_done(ideas, iteration.id, ids["done"])
    await mark_done(ideas, iteration.id, ids["in_progress"])
    return product, iteration.id, ids


async def test_the_cut_ships_done_ideas_and_rolls_the_rest_into_next_week(
    ideas: IdeasClients,
) -> None:
    product, iteration_id, ids = await week(ideas)
    release = await cut(ideas, iteration_id, "OS 3.0.26.11.27", request_id="cut-1")
    assert {i.idea_id for i in release.shipped_ideas} == {ids["done"], ids["in_progress"]}
    assert list(release.rolled_over_idea_ids) == [ids["not_done"]]
    assert list(release.dropped_idea_ids) == [ids["declined"]]
    assert release.published_by == "release-bot"

    for key in ("done", "in_progress"):
        idea = await ideas.ideas.GetIdea(ideas_pb.GetIdeaRequest(idea_id=ids[key]), metadata=PM)
        assert idea.idea.status == status.IDEA_STATUS_SHIPPED
    released = await ideas.releases.GetIteration(
        rel_pb.GetIterationRequest(iteration_id=iteration_id), metadata=PM
    )
    assert released.iteration.state == rel_pb.ITERATION_STATE_RELEASED
    assert released.iteration.release_id == release.id

    following = await ideas.releases.GetIteration(
        rel_pb.GetIterationRequest(iteration_id=release.next_iteration_id), metadata=PM
    )
    assert (following.iteration.name, following.iteration.start_date) == ("2026-W49", "2026-11-30")
    carried = await iteration_ideas(ideas, release.next_iteration_id)
    assert [(i.idea_id, i.done, i.status) for i in carried] == [
        (ids["not_done"], False, status.IDEA_STATUS_PLANNED)
    ]
    outcomes = {i.idea_id: i.outcome for i in await iteration_ideas(ideas, iteration_id)}
    assert outcomes == {
        ids["done"]: rel_pb.ITERATION_IDEA_OUTCOME_SHIPPED,
        ids["in_progress"]: rel_pb.ITERATION_IDEA_OUTCOME_SHIPPED,
        ids["not_done"]: rel_pb.ITERATION_IDEA_OUTCOME_ROLLED_OVER,
        ids["declined"]: rel_pb.ITERATION_IDEA_OUTCOME_DROPPED,
    }
    assert product == release.product_id


async def test_the_cut_emits_a_status_change_per_shipped_idea_and_one_release_event(
    ideas: IdeasClients,
) -> None:
    _, iteration_id, ids = await week(ideas)
    release = await cut(ideas, iteration_id, "OS 3.0.26.11.27")
    envelopes = await outbox_events(ideas)
    shipped = [
        e
        for e in payloads(envelopes, ideas_events_pb2.IdeaStatusChanged)
        if e.new_status == status.IDEA_STATUS_SHIPPED
    ]
    assert sorted((e.idea_id, e.release_id, e.actor_id) for e in shipped) == sorted(
        (ids[k], release.id, "release-bot") for k in ("done", "in_progress")
    )
    published = []
    for envelope in envelopes:
        message = ideas_events_pb2.ReleasePublished()
        if envelope.payload.Unpack(message):
            published.append(message)
    assert len(published) == 1
    assert published[0].release_id == release.id
    assert set(published[0].shipped_idea_ids) == {ids["done"], ids["in_progress"]}
    assert list(published[0].rolled_over_idea_ids) == [ids["not_done"]]
    history = await ideas.ideas.ListIdeaHistory(
        ideas_pb.ListIdeaHistoryRequest(idea_id=ids["done"]), metadata=PM
    )
    last = history.entries[-1]
    assert (last.new_status, last.note) == (
        status.IDEA_STATUS_SHIPPED,
        "shipped in OS 3.0.26.11.27",
    )


async def test_cutting_again_changes_nothing_and_returns_the_same_release(
    ideas: IdeasClients,
) -> None:
    _, iteration_id, _ = await week(ideas)
    first = await cut(ideas, iteration_id, "OS 3.0.26.11.27", request_id="cut-1")
    events_after_first = len(await outbox_events(ideas))
    replayed = await cut(ideas, iteration_id, "OS 3.0.26.11.27", request_id="cut-1")
    rerun = await cut(ideas, iteration_id, "OS 3.0.26.11.27", request_id="cut-2")
    unkeyed = await cut(ideas, iteration_id, "OS 3.0.26.11.27")
    assert first == replayed == rerun == unkeyed
    assert len(await outbox_events(ideas)) == events_after_first
    with pytest.raises(grpc.aio.AioRpcError) as other_version:
        await cut(ideas, iteration_id, "OS 3.0.26.11.28")
    assert other_version.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(other_version.value) == "ITERATION_ALREADY_RELEASED"


async def test_a_version_is_used_once_per_product_and_members_cannot_cut(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    first = await new_iteration(ideas, product, "2026-W48")
    second = await new_iteration(ideas, product, "2026-W50")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await ideas.releases.CutRelease(
            rel_pb.CutReleaseRequest(iteration_id=first.id, version="v1"),
            metadata=metadata("m1"),
        )
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    empty = await cut(ideas, first.id, "v1")
    assert list(empty.shipped_ideas) == [] and empty.next_iteration_id == ""
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await cut(ideas, second.id, "V1")
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(taken.value) == "VERSION_TAKEN"


async def test_release_notes_list_the_shipped_ideas_in_markdown_and_json(
    ideas: IdeasClients,
) -> None:
    _, iteration_id, ids = await week(ideas)
    await ideas.ideas.AddComment(
        ideas_pb.AddCommentRequest(idea_id=ids["done"], body="Yes please, my eyes!"),
        metadata=metadata("commenter-1"),
    )
    with pytest.raises(grpc.aio.AioRpcError) as early:
        await ideas.releases.GetReleaseNotes(
            rel_pb.GetReleaseNotesRequest(iteration_id=iteration_id), metadata=PM
        )
    assert error_reason(early.value) == "ITERATION_NOT_RELEASED"
    release = await cut(ideas, iteration_id, "OS 3.0.26.11.27")
    markdown = await ideas.releases.GetReleaseNotes(
        rel_pb.GetReleaseNotesRequest(iteration_id=iteration_id), metadata=metadata("anyone")
    )
    assert markdown.media_type == "text/markdown"
    text = markdown.content
    assert text.startswith("# Release OS 3.0.26.11.27\n")
    assert "## Phone OS" in text
    assert "**Dark mode everywhere**" in text and "idea by author-done" in text
    assert "**Faster fingerprint unlock**" in text
    assert "Battery saver" not in text
    assert "## Thanks to" in text and "commenter-1: 1 comment on the shipped ideas" in text

    as_json = await ideas.releases.GetReleaseNotes(
        rel_pb.GetReleaseNotesRequest(
            release_id=release.id, format=rel_pb.RELEASE_NOTES_FORMAT_JSON
        ),
        metadata=PM,
    )
    parsed = json.loads(as_json.content)
    assert parsed["version"] == "OS 3.0.26.11.27"
    shipped = parsed["products"][0]["shippedIdeas"]
    assert {i["title"] for i in shipped} == {"Dark mode everywhere", "Faster fingerprint unlock"}
    thanked = [c["memberId"] for c in parsed["thanksTo"]]
    assert set(thanked[:2]) == {"author-done", "author-in_progress"}
    assert thanked[2:] == ["commenter-1"]


async def test_concurrent_cuts_of_one_iteration_make_one_release(ideas: IdeasClients) -> None:
    _, iteration_id, ids = await week(ideas)
    releases = await asyncio.gather(
        *(cut(ideas, iteration_id, "OS 3.0.26.11.27", request_id=f"job-{n}") for n in range(4))
    )
    assert all(r == releases[0] for r in releases)
    envelopes = await outbox_events(ideas)
    shipped = [
        e.idea_id
        for e in payloads(envelopes, ideas_events_pb2.IdeaStatusChanged)
        if e.new_status == status.IDEA_STATUS_SHIPPED
    ]
    assert sorted(shipped) == sorted([ids["done"], ids["in_progress"]])
    carried = await iteration_ideas(ideas, releases[0].next_iteration_id)
    assert [i.idea_id for i in carried] == [ids["not_done"]]
