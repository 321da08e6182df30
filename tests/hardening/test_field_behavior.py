"""Field behaviour, declared on the protos and held by the services: a request
field annotated REQUIRED (cocreate.api.v1.field_behavior) is exactly what an
empty request to that method is refused for. Every method is called once
with an empty request by a caller the authorization table allows; the answer
must be INVALID_ARGUMENT naming every REQUIRED field and nothing else (or OK
when the request has none), so the annotations and the services' checks
cannot drift apart."""

from __future__ import annotations

from typing import Any

import grpc
from cocreate.api.v1 import field_behavior_pb2
from google.protobuf import descriptor
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from tests.hardening import fuzz
from tests.hardening.test_authz_matrix import CALLERS, load_table, served
from tests.support import Platform

REQUIRED = field_behavior_pb2.FIELD_BEHAVIOR_REQUIRED

# Fields an empty request is refused for that are required only sometimes, so
# they are not annotated REQUIRED: each with why.
CONDITIONAL = {
    # An empty update_mask names every field, so an empty request asks to set
    # the title or name to nothing; a mask without it needs none.
    "cocreate.ideas.v1.IdeaService.UpdateIdea": {"title"},
    "cocreate.ideas.v1.IdeaService.UpdateProduct": {"name"},
    # One key of a oneof (idea_id or number).
    "cocreate.ideas.v1.IdeaService.GetIdea": {"idea_id"},
    # The ids to mark, or all = true.
    "cocreate.votes.v1.NotificationService.MarkNotificationsRead": {"ids"},
}


def required_fields(message: descriptor.Descriptor) -> set[str]:
    return {
        field.name
        for field in message.fields
        if REQUIRED in field.GetOptions().Extensions[field_behavior_pb2.field_behavior]
    }


async def refused_fields(
    channel: grpc.aio.Channel, target: fuzz.Target, caller: Any
) -> tuple[grpc.StatusCode, set[str]]:
    """The code an empty request gets, and the fields its BadRequest names."""
    try:
        if target.streaming:
            stream = channel.unary_stream(target.path, request_serializer=None)(
                b"", metadata=caller, timeout=30
            )
            await stream.initial_metadata()
            if target.endless and not stream.done():
                stream.cancel()
                return grpc.StatusCode.OK, set()
            async for _ in stream:
                pass
        else:
            await channel.unary_unary(target.path, request_serializer=None)(
                b"", metadata=caller, timeout=30
            )
        return grpc.StatusCode.OK, set()
    except grpc.aio.AioRpcError as error:
        status = rpc_status.from_call(error)
        fields: set[str] = set()
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields |= {v.field for v in bad.field_violations}
        return error.code(), fields


async def test_an_empty_request_is_refused_for_exactly_its_required_fields(
    platform: Platform,
) -> None:
    services = [await platform.start(name) for name in ("ideas", "votes", "rewards")]
    table = load_table()
    channels = {s.address: grpc.aio.insecure_channel(s.address) for s in services}
    found: list[str] = []
    try:
        for name, (service, target) in sorted(served(services).items()):
            allowed = table[name]["allow"]
            caller = CALLERS["admin" if "admin" in allowed else allowed[0]]
            code, fields = await refused_fields(channels[service.address], target, caller)
            required = required_fields(target.request) | CONDITIONAL.get(name, set())
            expected = (grpc.StatusCode.INVALID_ARGUMENT, required) if required else None
            if expected is None and code == grpc.StatusCode.INVALID_ARGUMENT:
                found.append(f"{name}: refused for {sorted(fields)}, none annotated REQUIRED")
            elif expected is not None and (code, fields) != expected:
                found.append(
                    f"{name}: {code.name} for {sorted(fields)}, REQUIRED {sorted(required)}"
                )
    finally:
        for channel in channels.values():
            await channel.close()
    assert found == [], "\n".join(found)
