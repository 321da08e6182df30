"""Every RPC of every service, as admin, as member and without a token, with
edge values in every field: never a fault status, never a class name,
traceback or SQL in a message, and every service still healthy after.

Seeded, with a fixed number of cases per method, so a run is bounded and a
failure repeats. A planted fault shows the checker catches one."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence

import grpc
from cocreate.ops.v1 import dead_letter_service_pb2 as ops
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.kit import auth
from services.kit.errors import FieldViolation, InvalidArgument
from services.kit.server import RunningService, ServiceDefinition
from tests.hardening import fuzz
from tests.support import Platform, metadata

SEED = 20261202
CASES_PER_METHOD = 6
CALLERS = {
    "admin": metadata("fuzz-admin", "admin"),
    "member": metadata("fuzz-member", "member"),
}
CONCURRENCY = 16


def served_targets(running: RunningService) -> list[fuzz.Target]:
    pool = descriptor_pool.Default()
    names = [*running.definition.service_names, "cocreate.ops.v1.DeadLetterService"]
    return fuzz.targets([pool.FindServiceByName(name) for name in names])


async def fuzz_targets(
    channel: grpc.aio.Channel, targets: Sequence[fuzz.Target], cases: int = CASES_PER_METHOD
) -> list[str]:
    """Every case of every target as every caller; the problems found."""
    jobs = [
        (target, payload, role, caller)
        for target in targets
        for payload in fuzz.cases(target, SEED, cases)
        for role, caller in CALLERS.items()
    ]
    # One undecodable and one empty request without a token, per method.
    jobs += [(t, b"", "anonymous", ()) for t in targets]
    jobs += [(t, fuzz.CORRUPT[0], "anonymous", ()) for t in targets]
    problems: list[str] = []
    slots = asyncio.Semaphore(CONCURRENCY)

    async def run(target: fuzz.Target, payload: bytes, role: str, caller: object) -> None:
        async with slots:
            code, details = await fuzz.send(channel, target, payload, caller, deadline=30)
        if (
            role == "anonymous"
            and target.path not in auth.PUBLIC_METHODS
            and code != grpc.StatusCode.UNAUTHENTICATED
        ):
            problems.append(f"{target.path} without a token: {code.name}")
        found = fuzz.problem(code, details)
        if found:
            problems.append(f"{target.path} as {role} ({payload[:40]!r}…): {found}")

    await asyncio.gather(*(run(*job) for job in jobs))
    return problems


async def test_every_rpc_of_every_service_survives_the_fuzzer(platform: Platform) -> None:
    services = [await platform.start(name) for name in ("ideas", "votes", "rewards")]
    problems: list[str] = []
    for service in services:
        async with grpc.aio.insecure_channel(service.address) as channel:
            targets = served_targets(service)
            assert len(targets) >= 10
            problems += await fuzz_targets(channel, targets)
    assert problems == []
    for service in services:
        async with grpc.aio.insecure_channel(service.address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            answer = await health.Check(health_pb2.HealthCheckRequest())
            assert answer.status == health_pb2.HealthCheckResponse.SERVING


class PlantedFaults:
    """A servicer with the bugs the fuzzer must find."""

    @staticmethod
    async def crash(request: ops.ListDeadLettersRequest, context: object) -> None:
        raise ValueError("a bug")

    @staticmethod
    async def leak(request: ops.ListDeadLettersRequest, context: object) -> None:
        raise InvalidArgument(
            [FieldViolation("page_token", 'syntax error at or near "select" from ideas')]
        )


def _register_planted(server: grpc.aio.Server, runtime: object) -> None:
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour,
            request_deserializer=ops.ListDeadLettersRequest.FromString,
            response_serializer=ops.ListDeadLettersResponse.SerializeToString,
        )
        for name, behaviour in (("Crash", PlantedFaults.crash), ("Leak", PlantedFaults.leak))
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("cocreate.test.Planted", handlers),)
    )


async def test_the_checker_catches_a_planted_fault(platform: Platform) -> None:
    planted = ServiceDefinition(name="planted", service_names=[], register=_register_planted)
    service = await platform.start("planted", definition=planted)
    request = ops.ListDeadLettersRequest.DESCRIPTOR
    crash = fuzz.Target("/cocreate.test.Planted/Crash", request, streaming=False)
    leak = fuzz.Target("/cocreate.test.Planted/Leak", request, streaming=False)
    async with grpc.aio.insecure_channel(service.address) as channel:
        problems = await fuzz_targets(channel, [crash, leak], cases=1)
    assert any("Crash as admin" in p and "INTERNAL" in p for p in problems)
    assert any("Leak as member" in p and "leaks" in p for p in problems)
    # The class name and SQL patterns catch what they are meant to.
    assert fuzz.problem(grpc.StatusCode.INVALID_ARGUMENT, "Unexpected <class 'ValueError'>")
    assert fuzz.problem(grpc.StatusCode.NOT_FOUND, "DecodeError: Error parsing message")
    assert fuzz.problem(grpc.StatusCode.UNKNOWN, "") is not None
    assert fuzz.problem(grpc.StatusCode.INVALID_ARGUMENT, "title: must not contain NUL") is None


def test_the_fuzzer_covers_every_service_of_the_protos() -> None:
    modules = [
        "cocreate.ideas.v1.ideas_service_pb2",
        "cocreate.ideas.v1.release_service_pb2",
        "cocreate.votes.v1.votes_service_pb2",
        "cocreate.votes.v1.notification_service_pb2",
        "cocreate.rewards.v1.rewards_service_pb2",
    ]
    declared = {
        s.full_name
        for name in modules
        for s in importlib.import_module(name).DESCRIPTOR.services_by_name.values()
    }
    served = {
        name
        for svc in ("ideas", "votes", "rewards")
        for name in importlib.import_module(f"services.{svc}.service").DEFINITION.service_names
    }
    assert declared <= served
