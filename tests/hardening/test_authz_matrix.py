"""The authorization matrix: every method of every service × every kind of
caller, against the table next to the protos (protos/authz.yaml). A method
without an entry fails the test, so a new RPC gets its permissions decided."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import grpc
import yaml
from cocreate.ideas.v1 import ideas_service_pb2 as ideas_pb
from cocreate.ideas.v1 import ideas_service_pb2_grpc as ideas_grpc
from cocreate.rewards.v1 import rewards_service_pb2 as rewards_pb
from cocreate.rewards.v1 import rewards_service_pb2_grpc as rewards_grpc
from google.protobuf import descriptor_pool, json_format, message_factory

from services.kit import auth
from services.kit.server import RunningService
from tests.hardening import fuzz
from tests.support import Platform, metadata, stub

TABLE = Path(__file__).resolve().parents[2] / "protos" / "authz.yaml"
OWNER = "m-owner"
CALLERS: dict[str, Any] = {
    "anonymous": (),
    "other": metadata("m-other", "member"),
    "owner": metadata(OWNER, "member"),
    "pm": metadata("pm-1", "pm"),
    "admin": metadata("admin-1", "admin"),
    "service": metadata("release-bot", "service"),
}
ANSWERS = {
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.PERMISSION_DENIED: "deny",
}
_unique = itertools.count(1)


def load_table() -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = yaml.safe_load(TABLE.read_text())["methods"]
    return table


def intended(entry: dict[str, Any], caller: str) -> str:
    if caller == "anonymous":
        return str(entry.get("anonymous", "unauthenticated"))
    return "allow" if caller in entry["allow"] else "deny"


def served(services: list[RunningService]) -> dict[str, tuple[RunningService, fuzz.Target]]:
    pool = descriptor_pool.Default()
    found: dict[str, tuple[RunningService, fuzz.Target]] = {}
    for service in services:
        names = [*service.definition.service_names, "cocreate.ops.v1.DeadLetterService"]
        for target in fuzz.targets([pool.FindServiceByName(n) for n in names]):
            name = target.path.strip("/").replace("/", ".")
            found.setdefault(name, (service, target))
    return found


def _filled(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        if value == "{unique}":
            return f"authz {next(_unique)}"
        return names.get(value, value)
    if isinstance(value, list):
        return [_filled(v, names) for v in value]
    if isinstance(value, dict):
        return {k: _filled(v, names) for k, v in value.items()}
    return value


async def _resources(ideas: RunningService, rewards: RunningService) -> dict[str, str]:
    """The owner's idea and comment, a product and a catalogue item."""
    api = stub(ideas, ideas_grpc.IdeaServiceStub)
    admin = CALLERS["admin"]
    product = (
        await api.CreateProduct(ideas_pb.CreateProductRequest(name="Authz"), metadata=admin)
    ).product
    idea = (
        await api.SubmitIdea(
            ideas_pb.SubmitIdeaRequest(product_id=product.id, title="The owner's idea"),
            metadata=CALLERS["owner"],
        )
    ).idea
    comments = [
        (
            await api.AddComment(
                ideas_pb.AddCommentRequest(idea_id=idea.id, body=f"The owner's comment {n}"),
                metadata=CALLERS["owner"],
            )
        ).comment
        for n in range(2)
    ]
    item = (
        await stub(rewards, rewards_grpc.RewardsServiceStub).CreateCatalogueItem(
            rewards_pb.CreateCatalogueItemRequest(name="Mug", price=1, stock=100), metadata=admin
        )
    ).item
    return {
        "{owner}": OWNER,
        "{product}": product.id,
        "{idea}": idea.id,
        "{comment}": comments[0].id,
        "{comment_to_delete}": comments[1].id,
        "{item}": item.item_id,
        "{uuid}": str(uuid.uuid4()),
        "{uuid2}": str(uuid.uuid4()),
    }


async def test_every_method_answers_every_caller_as_the_table_says(platform: Platform) -> None:
    services = [await platform.start(name) for name in ("ideas", "votes", "rewards")]
    methods = served(services)
    table = load_table()
    missing = sorted(set(methods) - set(table))
    assert missing == [], f"methods without an entry in {TABLE.name}: {missing}"
    assert sorted(set(table) - set(methods)) == [], "entries for methods no service serves"
    public = sorted(n for n, entry in table.items() if entry.get("anonymous") == "allow")
    assert public == sorted(p.strip("/").replace("/", ".") for p in auth.PUBLIC_METHODS)
    names = await _resources(services[0], services[2])
    channels = {s.address: grpc.aio.insecure_channel(s.address) for s in services}
    mismatches: list[str] = []

    async def check(name: str, caller: str) -> None:
        service, target = methods[name]
        entry = table[name]
        request = message_factory.GetMessageClass(target.request)()
        json_format.ParseDict(_filled(entry.get("params", {}), names), request)
        code, details = await fuzz.send(
            channels[service.address], target, request.SerializeToString(), CALLERS[caller], 30
        )
        answer = ANSWERS.get(code, "allow")
        if answer != intended(entry, caller):
            mismatches.append(
                f"{name} as {caller}: {code.name} ({details[:80]}), "
                f"the table says {intended(entry, caller)}"
            )

    try:
        # One caller after the other, the owner before the staff: a deletion by
        # the owner leaves the staff a NOT_FOUND, which is still allowed.
        for name, caller in itertools.product(sorted(methods), CALLERS):
            await check(name, caller)
    finally:
        for channel in channels.values():
            await channel.close()
    assert mismatches == [], "\n".join(sorted(mismatches))
