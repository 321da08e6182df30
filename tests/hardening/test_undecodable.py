"""Finding 1: bytes that are not a message of the method's type answer
INVALID_ARGUMENT after the token is checked, with no class name and no
traceback in the log."""

from __future__ import annotations

import logging

import grpc
import pytest

from services.kit.server import ServiceDefinition
from tests.support import Platform, error_reason, metadata

BARE = ServiceDefinition(name="bare", service_names=[], register=lambda server, runtime: None)
METHOD = "/cocreate.ops.v1.DeadLetterService/ListDeadLetters"

UNDECODABLE = {
    # page_token (a string field) holding bytes that are not UTF-8
    "invalid-utf8": b"\x12\x02\xff\xfe",
    # a lone surrogate encoded as UTF-8 would (CESU-8), which UTF-8 forbids
    "surrogate": b"\x12\x03\xed\xa0\x80",
    # a length prefix running past the end
    "truncated": b"\x12\x7fabc",
    # wire type 7 does not exist
    "bad-wire-type": b"\x0f\x01",
}


@pytest.mark.parametrize("payload", UNDECODABLE.values(), ids=UNDECODABLE.keys())
async def test_undecodable_requests_are_invalid_argument_after_the_token(
    platform: Platform, payload: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    service = await platform.start("bare", definition=BARE)
    async with grpc.aio.insecure_channel(service.address) as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        with caplog.at_level(logging.INFO):
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await call(payload)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(payload, metadata=metadata("admin-1", "admin"))
    assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "UNDECODABLE_REQUEST"
    message = caught.value.details() or ""
    assert not any(word in message for word in ("class", "DecodeError", "Error parsing"))
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_undecodable_health_check_is_invalid_argument(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    service = await platform.start("bare", definition=BARE)
    async with grpc.aio.insecure_channel(service.address) as channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check", request_serializer=None, response_deserializer=None
        )
        with caplog.at_level(logging.INFO):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await check(b"\x0a\x02\xff\xfe")  # service: not UTF-8
            assert await check(b"") is not None  # an empty request is a valid Check
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
