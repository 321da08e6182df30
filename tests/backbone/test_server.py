"""The service bootstrap every service shares: health, reflection, auth, error details."""

from __future__ import annotations

import grpc
import jwt
import pytest
from cocreate.ops.v1 import dead_letter_service_pb2 as ops
from cocreate.ops.v1 import dead_letter_service_pb2_grpc as ops_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.kit import auth, config
from services.kit.server import ServiceDefinition
from tests.support import Platform, error_reason, metadata, stub, violated_fields

BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)


async def test_health_serves_and_turns_not_serving_on_shutdown(platform: Platform) -> None:
    service = await platform.start("bare", definition=BARE)
    health = stub(service, health_pb2_grpc.HealthStub)
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.SERVING
    await service._health.enter_graceful_shutdown()
    answer = await health.Check(health_pb2.HealthCheckRequest(service=""))
    assert answer.status == health_pb2.HealthCheckResponse.NOT_SERVING


async def test_reflection_lists_the_services(platform: Platform) -> None:
    service = await platform.start("bare", definition=BARE)
    reflection = stub(service, reflection_pb2_grpc.ServerReflectionStub)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    names = set()
    async for answer in reflection.ServerReflectionInfo(iter([request])):
        names = {s.name for s in answer.list_services_response.service}
    assert "cocreate.ops.v1.DeadLetterService" in names
    assert "grpc.health.v1.Health" in names


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-jwt",
        "Bearer " + auth.mint_token("m1", "admin", "a-different-secret-of-thirty-two-bytes!"),
        "Bearer " + auth.mint_token("m1", "admin", config.DEV_JWT_SECRET, ttl_seconds=-10),
        "Bearer " + jwt.encode({"sub": "m1", "role": "root", "exp": 2**40}, config.DEV_JWT_SECRET),
    ],
    ids=["missing", "not-bearer", "garbage", "forged", "expired", "unknown-role"],
)
async def test_bad_tokens_are_unauthenticated(
    platform: Platform, authorization: str | None
) -> None:
    service = await platform.start("bare", definition=BARE)
    dead_letters = stub(service, ops_grpc.DeadLetterServiceStub)
    call_metadata = (("authorization", authorization),) if authorization else ()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await dead_letters.ListDeadLetters(ops.ListDeadLettersRequest(), metadata=call_metadata)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_roles_are_checked_and_errors_carry_details(platform: Platform) -> None:
    service = await platform.start("bare", definition=BARE)
    dead_letters = stub(service, ops_grpc.DeadLetterServiceStub)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await dead_letters.ListDeadLetters(ops.ListDeadLettersRequest(), metadata=metadata("m1"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(caught.value) == "PERMISSION_DENIED"

    admin = metadata("a1", "admin")
    answer = await dead_letters.ListDeadLetters(ops.ListDeadLettersRequest(), metadata=admin)
    assert list(answer.dead_letters) == []

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await dead_letters.ListDeadLetters(ops.ListDeadLettersRequest(page_size=-1), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {"page_size"}

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await dead_letters.ListDeadLetters(
            ops.ListDeadLettersRequest(page_token="eyJpZCI6IDF9"), metadata=admin
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert violated_fields(caught.value) == {"page_token"}

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await dead_letters.ReplayDeadLetter(ops.ReplayDeadLetterRequest(id=42), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
