"""Iterations: creating them, planning ideas in and out, marking them done,
and freezing, against the real ideas service with its ReleaseService."""

from __future__ import annotations

import grpc
import pytest
from cocreate.ideas.v1 import idea_status_pb2 as status
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import release_service_pb2 as rel_pb

from tests.releases.helpers import (
    PM,
    IdeasClients,
    new_iteration,
    new_product,
    plan,
    start_ideas,
    submit,
)
from tests.support import Platform, error_reason, metadata, violated_fields


@pytest.fixture
async def ideas(platform: Platform) -> IdeasClients:
    return await start_ideas(platform)


async def test_an_iso_week_iteration_gets_its_week_as_dates(ideas: IdeasClients) -> None:
    product = await new_product(ideas)
    iteration = await new_iteration(ideas, product, "2026-W48")
    assert (iteration.start_date, iteration.end_date) == ("2026-11-23", "2026-11-29")
    assert iteration.state == rel_pb.ITERATION_STATE_PLANNING
    fetched = await ideas.releases.GetIteration(
        rel_pb.GetIterationRequest(iteration_id=iteration.id), metadata=metadata("m1")
    )
    assert fetched.iteration == iteration


async def test_a_custom_iteration_needs_dates_and_a_bad_week_is_refused(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await ideas.releases.CreateIteration(
            rel_pb.CreateIterationRequest(product_id=product, name="Winter polish"), metadata=PM
        )
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(missing.value) == {"start_date", "end_date"}
    with pytest.raises(grpc.aio.AioRpcError) as bad_week:
        await ideas.releases.CreateIteration(
            rel_pb.CreateIterationRequest(product_id=product, name="2026-W60"), metadata=PM
        )
    assert violated_fields(bad_week.value) == {"name"}
    custom = await ideas.releases.CreateIteration(
        rel_pb.CreateIterationRequest(
            product_id=product,
            name="Winter polish",
            start_date="2026-12-01",
            end_date="2026-12-14",
        ),
        metadata=PM,
    )
    assert custom.iteration.end_date == "2026-12-14"


async def test_members_may_not_create_iterations_and_names_are_unique(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    request = rel_pb.CreateIterationRequest(product_id=product, name="2026-W48")
    with pytest.raises(grpc.aio.AioRpcError) as denied:
        await ideas.releases.CreateIteration(request, metadata=metadata("m1"))
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await ideas.releases.CreateIteration(request, metadata=PM)
    with pytest.raises(grpc.aio.AioRpcError) as taken:
        await ideas.releases.CreateIteration(request, metadata=PM)
    assert taken.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(taken.value) == "ITERATION_NAME_TAKEN"


async def test_planning_an_open_idea_moves_it_to_planned_through_review(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    iteration = await new_iteration(ideas, product, "2026-W48")
    idea_id = await submit(ideas, product, "author-1", "Dark mode everywhere")
    planned = await plan(ideas, iteration.id, idea_id)
    assert (planned.status, planned.outcome) == (
        status.IDEA_STATUS_PLANNED,
        rel_pb.ITERATION_IDEA_OUTCOME_PLANNED,
    )
    again = await plan(ideas, iteration.id, idea_id)
    assert again.status == status.IDEA_STATUS_PLANNED
    history = await ideas.ideas.ListIdeaHistory(
        ideas_pb.ListIdeaHistoryRequest(idea_id=idea_id), metadata=PM
    )
    steps = [(e.old_status, e.new_status) for e in history.entries if e.new_status]
    assert steps == [
        (status.IDEA_STATUS_OPEN, status.IDEA_STATUS_UNDER_REVIEW),
        (status.IDEA_STATUS_UNDER_REVIEW, status.IDEA_STATUS_PLANNED),
    ]


async def test_an_idea_is_in_at_most_one_open_iteration(ideas: IdeasClients) -> None:
    product = await new_product(ideas)
    first = await new_iteration(ideas, product, "2026-W48")
    second = await new_iteration(ideas, product, "2026-W49")
    idea_id = await submit(ideas, product, "author-1", "Battery saver schedule")
    await plan(ideas, first.id, idea_id)
    with pytest.raises(grpc.aio.AioRpcError) as busy:
        await plan(ideas, second.id, idea_id)
    assert busy.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert error_reason(busy.value) == "IDEA_IN_OTHER_ITERATION"
    await ideas.releases.UnplanIdea(
        rel_pb.UnplanIdeaRequest(iteration_id=first.id, idea_id=idea_id), metadata=PM
    )
    moved = await plan(ideas, second.id, idea_id)
    assert moved.status == status.IDEA_STATUS_PLANNED
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await ideas.releases.UnplanIdea(
            rel_pb.UnplanIdeaRequest(iteration_id=first.id, idea_id=idea_id), metadata=PM
        )
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND


async def test_closed_ideas_and_other_products_ideas_cannot_be_planned(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    other = await new_product(ideas, "Watch OS")
    iteration = await new_iteration(ideas, product, "2026-W48")
    declined = await submit(ideas, product, "author-1", "Remove the clock")
    await ideas.ideas.ChangeIdeaStatus(
        ideas_pb.ChangeIdeaStatusRequest(idea_id=declined, status=status.IDEA_STATUS_DECLINED),
        metadata=PM,
    )
    with pytest.raises(grpc.aio.AioRpcError) as closed:
        await plan(ideas, iteration.id, declined)
    assert error_reason(closed.value) == "IDEA_CLOSED"
    foreign = await submit(ideas, other, "author-2", "Watch faces gallery")
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await plan(ideas, iteration.id, foreign)
    assert error_reason(wrong.value) == "IDEA_OF_OTHER_PRODUCT"


async def test_a_frozen_iteration_takes_no_new_ideas_but_ideas_can_be_marked_done(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    iteration = await new_iteration(ideas, product, "2026-W48")
    planned = await submit(ideas, product, "author-1", "Quick settings tiles")
    late = await submit(ideas, product, "author-2", "Lock screen widgets")
    await plan(ideas, iteration.id, planned)
    frozen = await ideas.releases.FreezeIteration(
        rel_pb.FreezeIterationRequest(iteration_id=iteration.id), metadata=PM
    )
    assert frozen.iteration.state == rel_pb.ITERATION_STATE_FROZEN
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await plan(ideas, iteration.id, late)
    assert error_reason(refused.value) == "ITERATION_FROZEN"
    done = await ideas.releases.MarkIdeaDone(
        rel_pb.MarkIdeaDoneRequest(iteration_id=iteration.id, idea_id=planned), metadata=PM
    )
    assert done.idea.done
    undone = await ideas.releases.MarkIdeaDone(
        rel_pb.MarkIdeaDoneRequest(iteration_id=iteration.id, idea_id=planned, undo=True),
        metadata=PM,
    )
    assert not undone.idea.done
    fetched = await ideas.releases.GetIteration(
        rel_pb.GetIterationRequest(iteration_id=iteration.id), metadata=PM
    )
    assert (fetched.iteration.idea_count, fetched.iteration.done_count) == (1, 0)


async def test_list_iterations_pages_newest_first_and_filters_by_state(
    ideas: IdeasClients,
) -> None:
    product = await new_product(ideas)
    for week in range(40, 45):
        await new_iteration(ideas, product, f"2026-W{week}")
    names: list[str] = []
    token = ""
    while True:
        page = await ideas.releases.ListIterations(
            rel_pb.ListIterationsRequest(product_id=product, page_size=2, page_token=token),
            metadata=PM,
        )
        names += [i.name for i in page.iterations]
        token = page.next_page_token
        if not token:
            break
    assert names == [f"2026-W{w}" for w in range(44, 39, -1)]
    frozen = await ideas.releases.ListIterations(
        rel_pb.ListIterationsRequest(states=[rel_pb.ITERATION_STATE_FROZEN]), metadata=PM
    )
    assert list(frozen.iterations) == []
