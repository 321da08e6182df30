"""The lost answer, for every kind of mutation: the first call commits but
its answer never reaches the client (the connection is cut after the server
answered); the client retries with the same request_id, as it must when it
sees UNAVAILABLE, and the change is not applied twice.

Every method whose request has a request_id is a mutation and must have a
scenario here (the list is read from the service descriptors, so a new
mutation fails this test until it gets one). For each, the three databases
are compared whole — every row of every table — when the platform is quiet:
the lost call changed something, and the retry changed nothing, anywhere
(no second row, no second event, no second reward, no second notification).
The retry is answered OK, and answering it again gives the same answer.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from cocreate.ideas.v1 import ideas_service_pb2, release_service_pb2
from cocreate.rewards.v1 import rewards_service_pb2
from cocreate.votes.v1 import notification_service_pb2, votes_service_pb2
from google.protobuf import descriptor, json_format, message_factory

from services.kit.server import RunningService
from tests.faults import checker
from tests.faults.cut import AnswerCutter
from tests.support import Platform, eventually, metadata

# Each service with a mutation, by full name → (the process serving it, it).
SERVICES: dict[str, tuple[str, descriptor.ServiceDescriptor]] = {
    found.full_name: (owner, found)
    for owner, found in (
        ("ideas", ideas_service_pb2.DESCRIPTOR.services_by_name["IdeaService"]),
        ("ideas", release_service_pb2.DESCRIPTOR.services_by_name["ReleaseService"]),
        ("votes", votes_service_pb2.DESCRIPTOR.services_by_name["VoteService"]),
        ("votes", notification_service_pb2.DESCRIPTOR.services_by_name["NotificationService"]),
        ("rewards", rewards_service_pb2.DESCRIPTOR.services_by_name["RewardsService"]),
    )
}
CALLERS = {
    "admin": metadata("admin-1", "admin"),
    "pm": metadata("pm-1", "pm"),
    "owner": metadata("lost-owner"),
    "member": metadata("lost-member"),
}
_names = itertools.count(1)
# Quiet means nothing in flight: an unpublished outbox row, an undelivered or
# unacknowledged event and an unfolded tally mark each show; the change and
# its next step are committed together, so a short still moment is enough.
QUIET = 0.3

Prepared = tuple[dict[str, Any], str]  # the request as JSON, and who calls


def mutations() -> dict[str, descriptor.MethodDescriptor]:
    return {
        f"{service}.{method.name}": method
        for service, (_, found) in SERVICES.items()
        for method in found.methods
        if "request_id" in method.input_type.fields_by_name
    }


class Lab:
    """The running platform, a way to call any method by name, directly or
    through the cutter, and the resources scenarios are built from."""

    def __init__(self, services: dict[str, RunningService], dbs: checker.Databases) -> None:
        self.services = services
        self.dbs = dbs
        self.channels = {n: grpc.aio.insecure_channel(s.address) for n, s in services.items()}

    async def call(
        self,
        name: str,
        params: dict[str, Any],
        caller: str,
        channel: grpc.aio.Channel | None = None,
    ) -> Any:
        service, method_name = name.rsplit(".", 1)
        owner, found = SERVICES[service]
        method = found.methods_by_name[method_name]
        request = message_factory.GetMessageClass(method.input_type)()
        json_format.ParseDict(params, request)
        answer_class = message_factory.GetMessageClass(method.output_type)
        unary = (channel or self.channels[owner]).unary_unary(
            f"/{service}/{method_name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=answer_class.FromString,
        )
        return await unary(request, metadata=CALLERS[caller], timeout=20)

    async def product(self) -> str:
        answer = await self.call(
            "cocreate.ideas.v1.IdeaService.CreateProduct",
            {"name": f"Lost answers {next(_names)}"},
            "admin",
        )
        return str(answer.product.id)

    async def idea(self, product: str, *, author: str = "owner", voted: bool = False) -> str:
        answer = await self.call(
            "cocreate.ideas.v1.IdeaService.SubmitIdea",
            {"productId": product, "title": f"Idea number {next(_names)}"},
            author,
        )
        idea_id = str(answer.idea.id)
        if voted:
            await self.vote(idea_id, "member")
        return idea_id

    async def vote(self, idea_id: str, member: str) -> None:
        """Casts once the votes service has heard of the idea."""

        async def cast() -> bool:
            try:
                await self.call(
                    "cocreate.votes.v1.VoteService.CastVote", {"ideaId": idea_id}, member
                )
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                return False
            return True

        await eventually(cast)

    async def comment(self, idea_id: str) -> str:
        answer = await self.call(
            "cocreate.ideas.v1.IdeaService.AddComment",
            {"ideaId": idea_id, "body": f"comment {next(_names)}"},
            "owner",
        )
        return str(answer.comment.id)

    async def iteration(self, product: str, *ideas: str, done: bool = False) -> str:
        release = "cocreate.ideas.v1.ReleaseService"
        answer = await self.call(
            f"{release}.CreateIteration",
            {
                "productId": product,
                "name": f"Sprint {next(_names)}",
                "startDate": "2027-01-04",
                "endDate": "2027-01-10",
            },
            "pm",
        )
        iteration = str(answer.iteration.id)
        for idea_id in ideas:
            await self.call(
                f"{release}.PlanIdea", {"iterationId": iteration, "ideaId": idea_id}, "pm"
            )
            if done:
                await self.call(
                    f"{release}.MarkIdeaDone", {"iterationId": iteration, "ideaId": idea_id}, "pm"
                )
        return iteration

    async def points(self, member_id: str, amount: int) -> None:
        await self.call(
            "cocreate.rewards.v1.RewardsService.GrantPoints",
            {"memberId": member_id, "amount": str(amount), "reason": "for the test"},
            "admin",
        )

    async def item(self) -> str:
        answer = await self.call(
            "cocreate.rewards.v1.RewardsService.CreateCatalogueItem",
            {"name": f"Sticker {next(_names)}", "price": "5", "stock": "10"},
            "admin",
        )
        return str(answer.item.item_id)

    async def unread_notification(self) -> None:
        """A status change of an idea the member supports: a notification."""
        product = await self.product()
        idea_id = await self.idea(product, voted=True)
        await self.call(
            "cocreate.ideas.v1.IdeaService.ChangeIdeaStatus",
            {"ideaId": idea_id, "status": "IDEA_STATUS_UNDER_REVIEW"},
            "pm",
        )

        async def told() -> bool:
            answer = await self.call(
                "cocreate.votes.v1.NotificationService.ListNotifications", {}, "member"
            )
            return any(not n.read for n in answer.notifications)

        await eventually(told)


IDEAS = "cocreate.ideas.v1.IdeaService"
RELEASES = "cocreate.ideas.v1.ReleaseService"
VOTES = "cocreate.votes.v1.VoteService"
REWARDS = "cocreate.rewards.v1.RewardsService"


async def _create_product(lab: Lab) -> Prepared:
    return {"name": "A product whose answer was lost"}, "admin"


async def _update_product(lab: Lab) -> Prepared:
    product = await lab.product()
    return {"productId": product, "description": "new words", "updateMask": "description"}, "admin"


async def _archive_product(lab: Lab) -> Prepared:
    return {"productId": await lab.product()}, "admin"


async def _submit_idea(lab: Lab) -> Prepared:
    return {"productId": await lab.product(), "title": "An idea whose answer was lost"}, "owner"


async def _update_idea(lab: Lab) -> Prepared:
    idea_id = await lab.idea(await lab.product())
    return {"ideaId": idea_id, "body": "a better body", "updateMask": "body"}, "owner"


async def _change_status(lab: Lab) -> Prepared:
    idea_id = await lab.idea(await lab.product(), voted=True)
    return {"ideaId": idea_id, "status": "IDEA_STATUS_UNDER_REVIEW"}, "pm"


async def _merge(lab: Lab) -> Prepared:
    product = await lab.product()
    source = await lab.idea(product, voted=True)
    target = await lab.idea(product)
    return {"sourceIdeaId": source, "targetIdeaId": target}, "pm"


async def _hide(lab: Lab) -> Prepared:
    idea_id = await lab.idea(await lab.product(), voted=True)
    return {"ideaId": idea_id, "reason": "spam"}, "pm"


async def _unhide(lab: Lab) -> Prepared:
    idea_id = await lab.idea(await lab.product())
    await lab.call(f"{IDEAS}.HideIdea", {"ideaId": idea_id, "reason": "spam"}, "pm")
    return {"ideaId": idea_id, "reason": "not spam after all"}, "pm"


async def _report(lab: Lab) -> Prepared:
    return {"ideaId": await lab.idea(await lab.product()), "reason": "duplicate"}, "member"


async def _add_comment(lab: Lab) -> Prepared:
    return {"ideaId": await lab.idea(await lab.product()), "body": "me too"}, "member"


async def _update_comment(lab: Lab) -> Prepared:
    comment = await lab.comment(await lab.idea(await lab.product()))
    return {"commentId": comment, "body": "edited"}, "owner"


async def _delete_comment(lab: Lab) -> Prepared:
    return {"commentId": await lab.comment(await lab.idea(await lab.product()))}, "owner"


async def _hide_comment(lab: Lab) -> Prepared:
    comment = await lab.comment(await lab.idea(await lab.product()))
    return {"commentId": comment, "reason": "rude"}, "pm"


async def _create_iteration(lab: Lab) -> Prepared:
    return {"productId": await lab.product(), "name": "2027-W02"}, "pm"


async def _freeze(lab: Lab) -> Prepared:
    return {"iterationId": await lab.iteration(await lab.product())}, "pm"


async def _plan(lab: Lab) -> Prepared:
    product = await lab.product()
    iteration = await lab.iteration(product)
    return {"iterationId": iteration, "ideaId": await lab.idea(product, voted=True)}, "pm"


async def _unplan(lab: Lab) -> Prepared:
    product = await lab.product()
    idea_id = await lab.idea(product)
    return {"iterationId": await lab.iteration(product, idea_id), "ideaId": idea_id}, "pm"


async def _mark_done(lab: Lab) -> Prepared:
    product = await lab.product()
    idea_id = await lab.idea(product)
    return {"iterationId": await lab.iteration(product, idea_id), "ideaId": idea_id}, "pm"


async def _cut_release(lab: Lab) -> Prepared:
    product = await lab.product()
    shipped = await lab.idea(product, voted=True)
    rolled_over = await lab.idea(product)
    iteration = await lab.iteration(product, shipped)
    await lab.call(f"{RELEASES}.PlanIdea", {"iterationId": iteration, "ideaId": rolled_over}, "pm")
    await lab.call(f"{RELEASES}.MarkIdeaDone", {"iterationId": iteration, "ideaId": shipped}, "pm")
    return {"iterationId": iteration, "version": "OS 3.0.27.1.8"}, "pm"


async def _cast(lab: Lab) -> Prepared:
    idea_id = await lab.idea(await lab.product())
    await lab.vote(idea_id, "owner")  # the votes service knows the idea
    return {"ideaId": idea_id}, "member"


async def _retract(lab: Lab) -> Prepared:
    return {"ideaId": await lab.idea(await lab.product(), voted=True)}, "member"


async def _weights(lab: Lab) -> Prepared:
    policy = await lab.call(f"{VOTES}.GetWeightPolicy", {}, "admin")
    weights = {tier: str(weight + 1) for tier, weight in policy.policy.weights.items()}
    return {"weights": weights}, "admin"


async def _void(lab: Lab) -> Prepared:
    await lab.idea(await lab.product(), voted=True)
    return {"memberId": "lost-member", "reason": "spam ring", "ban": True}, "pm"


async def _lift_ban(lab: Lab) -> Prepared:
    await lab.call(
        f"{VOTES}.VoidMemberVotes",
        {"memberId": "lost-banned", "reason": "spam ring", "ban": True},
        "pm",
    )
    return {"memberId": "lost-banned", "reason": "appeal upheld"}, "pm"


async def _mark_read(lab: Lab) -> Prepared:
    await lab.unread_notification()
    return {"all": True}, "member"


async def _update_rule(lab: Lab) -> Prepared:
    rule = await lab.call(f"{REWARDS}.GetRule", {"ruleId": "vote_cast"}, "admin")
    return {"ruleId": "vote_cast", "points": str(rule.rule.points + 1)}, "admin"


async def _grant_points(lab: Lab) -> Prepared:
    return {"memberId": "lost-member", "amount": "25", "reason": "a gift"}, "admin"


async def _deduct_points(lab: Lab) -> Prepared:
    await lab.points("lost-member", 10)
    return {"memberId": "lost-member", "amount": "3", "reason": "a correction"}, "admin"


async def _grant_tier(lab: Lab) -> Prepared:
    return {"memberId": "lost-member", "tier": "core", "reason": "helps a lot"}, "admin"


async def _revoke_tier(lab: Lab) -> Prepared:
    await lab.call(
        f"{REWARDS}.GrantTier",
        {"memberId": "lost-tiered", "tier": "honorary", "reason": "helps a lot"},
        "admin",
    )
    return {"memberId": "lost-tiered", "reason": "left the team"}, "admin"


async def _create_item(lab: Lab) -> Prepared:
    return {"name": "A mug whose answer was lost", "price": "7", "stock": "3"}, "admin"


async def _update_item(lab: Lab) -> Prepared:
    return {"itemId": await lab.item(), "stock": "99"}, "admin"


async def _redeem(lab: Lab) -> Prepared:
    await lab.points("lost-owner", 20)
    return {"itemId": await lab.item()}, "owner"


SCENARIOS: dict[str, Callable[[Lab], Awaitable[Prepared]]] = {
    f"{IDEAS}.CreateProduct": _create_product,
    f"{IDEAS}.UpdateProduct": _update_product,
    f"{IDEAS}.ArchiveProduct": _archive_product,
    f"{IDEAS}.SubmitIdea": _submit_idea,
    f"{IDEAS}.UpdateIdea": _update_idea,
    f"{IDEAS}.ChangeIdeaStatus": _change_status,
    f"{IDEAS}.MergeIdeas": _merge,
    f"{IDEAS}.HideIdea": _hide,
    f"{IDEAS}.UnhideIdea": _unhide,
    f"{IDEAS}.ReportIdea": _report,
    f"{IDEAS}.AddComment": _add_comment,
    f"{IDEAS}.UpdateComment": _update_comment,
    f"{IDEAS}.DeleteComment": _delete_comment,
    f"{IDEAS}.HideComment": _hide_comment,
    f"{RELEASES}.CreateIteration": _create_iteration,
    f"{RELEASES}.FreezeIteration": _freeze,
    f"{RELEASES}.PlanIdea": _plan,
    f"{RELEASES}.UnplanIdea": _unplan,
    f"{RELEASES}.MarkIdeaDone": _mark_done,
    f"{RELEASES}.CutRelease": _cut_release,
    f"{VOTES}.CastVote": _cast,
    f"{VOTES}.RetractVote": _retract,
    f"{VOTES}.UpdateWeightPolicy": _weights,
    f"{VOTES}.VoidMemberVotes": _void,
    f"{VOTES}.LiftVoteBan": _lift_ban,
    "cocreate.votes.v1.NotificationService.MarkNotificationsRead": _mark_read,
    f"{REWARDS}.UpdateRule": _update_rule,
    f"{REWARDS}.GrantPoints": _grant_points,
    f"{REWARDS}.DeductPoints": _deduct_points,
    f"{REWARDS}.GrantTier": _grant_tier,
    f"{REWARDS}.RevokeTier": _revoke_tier,
    f"{REWARDS}.CreateCatalogueItem": _create_item,
    f"{REWARDS}.UpdateCatalogueItem": _update_item,
    f"{REWARDS}.RedeemItem": _redeem,
}


async def everything(dbs: checker.Databases) -> dict[str, str]:
    """A digest of every table of every service's database."""
    digests = {}
    for name, conn in dbs.all.items():
        tables = await conn.fetch(
            "select tablename from pg_tables where schemaname = 'public' order by 1"
        )
        for row in tables:
            table = row["tablename"]
            digests[f"{name}.{table}"] = await conn.fetchval(
                f"select md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) "
                f'from "{table}" t'
            )
    return digests


def changed(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in set(before) | set(after) if before.get(t) != after.get(t))


def test_every_mutation_has_a_lost_answer_scenario() -> None:
    assert sorted(set(mutations()) - set(SCENARIOS)) == []
    assert sorted(set(SCENARIOS) - set(mutations())) == []


async def lose_and_retry(
    lab: Lab,
    platform: Platform,
    cutters: dict[str, AnswerCutter],
    name: str,
    *,
    same_id: bool = True,
) -> list[str]:
    """Prepare `name`'s scenario, lose the first call's answer, retry (with
    the same request_id unless told otherwise) and say what went wrong."""
    params, caller = await SCENARIOS[name](lab)
    params["requestId"] = str(uuid.uuid4())
    owner = SERVICES[name.rsplit(".", 1)[0]][0]
    await checker.wait_for_quiet(platform, lab.dbs, quiet_for=QUIET)
    before = await everything(lab.dbs)

    cutter = cutters[owner]
    cuts = cutter.cuts
    async with grpc.aio.insecure_channel(cutter.address) as cut_channel:
        with pytest.raises(grpc.aio.AioRpcError) as lost:
            await lab.call(name, params, caller, cut_channel)
    assert lost.value.code() == grpc.StatusCode.UNAVAILABLE, (name, lost.value)
    assert cutter.cuts == cuts + 1, f"{name}: the server did not answer"
    await checker.wait_for_quiet(platform, lab.dbs, quiet_for=QUIET)
    after_lost = await everything(lab.dbs)

    if not same_id:
        params["requestId"] = str(uuid.uuid4())
    retried = await lab.call(name, params, caller)
    await checker.wait_for_quiet(platform, lab.dbs, quiet_for=QUIET)
    after_retry = await everything(lab.dbs)
    again = await lab.call(name, params, caller)

    found = []
    if not changed(before, after_lost):
        found.append(f"{name}: the lost call changed nothing")
    if twice := changed(after_lost, after_retry):
        found.append(f"{name}: the retry changed {twice}")
    if same_id and again.SerializeToString() != retried.SerializeToString():
        found.append(f"{name}: a second retry was answered {again}, the first {retried}")
    return found


@pytest.fixture
async def lab(platform: Platform) -> AsyncIterator[tuple[Lab, dict[str, AnswerCutter]]]:
    # The scenarios submit more ideas and comments than a member may in an hour.
    unlimited = {
        "COCREATE_IDEAS_IDEAS_PER_HOUR": "0",
        "COCREATE_IDEAS_COMMENTS_PER_MINUTE": "0",
        "COCREATE_VOTES_CAST_LIMIT": "0",
    }
    services = {
        name: await platform.start(name, unlimited) for name in ("ideas", "votes", "rewards")
    }
    dbs = await checker.Databases.open(platform)
    running = Lab(services, dbs)
    cutters = {name: AnswerCutter(s.address) for name, s in services.items()}
    for cutter in cutters.values():
        await cutter.start()
    try:
        yield running, cutters
    finally:
        for cutter in cutters.values():
            await cutter.stop()
        for channel in running.channels.values():
            await channel.close()
        await dbs.close()


@pytest.mark.timeout(600)
async def test_a_retried_mutation_whose_answer_was_lost_is_not_applied_twice(
    platform: Platform, lab: tuple[Lab, dict[str, AnswerCutter]]
) -> None:
    running, cutters = lab
    found = []
    for name in sorted(SCENARIOS):
        found += await lose_and_retry(running, platform, cutters, name)
    assert found == [], "\n".join(found)


async def test_the_comparison_sees_a_mutation_applied_twice(
    platform: Platform, lab: tuple[Lab, dict[str, AnswerCutter]]
) -> None:
    """The planted fault: a client that retries with a new request_id has
    its change applied twice, and the whole-database comparison says so."""
    running, cutters = lab
    for name in (f"{REWARDS}.GrantPoints", f"{IDEAS}.AddComment", f"{VOTES}.UpdateWeightPolicy"):
        found = await lose_and_retry(running, platform, cutters, name, same_id=False)
        assert len(found) == 1 and f"{name}: the retry changed" in found[0], found
