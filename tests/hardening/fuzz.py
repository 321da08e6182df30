"""A fuzzer built from the protobuf descriptors: edge values for every field of
a method's request, on the wire as bytes (so invalid UTF-8 and surrogates go
too), and a checker of what a service may answer a caller's mistake."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor, message, message_factory
from google.protobuf.descriptor import FieldDescriptor as F

# What a caller's request must never get back.
FAULT_CODES = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.DATA_LOSS,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
LEAKS = [
    re.compile(r"Traceback|File \"|line \d+, in "),
    re.compile(r"<class '|\b[A-Z][a-z]+(?:[A-Z][a-z]*)*(?:Error|Exception)\b"),
    re.compile(r"asyncpg|psycopg|SQLSTATE|syntax error at|violates .* constraint|relation \""),
    re.compile(r"\b(select|insert|update|delete)\b.+\b(from|into|set|where)\b", re.IGNORECASE),
]

EDGE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    "\u202e\u0007\x1b[31m",
    "💥" * 50,
    "'; drop table ideas; --",
    "%_\\",
    "x" * 100_000,
    "IDEA_STATUS_SHIPPED",
    "eyJub3QiOiJhIHRva2VuIn0",
]
EDGE_INTS = {
    F.TYPE_INT32: [0, -1, 1, 2**31 - 1, -(2**31)],
    F.TYPE_SINT32: [0, -1, 2**31 - 1, -(2**31)],
    F.TYPE_SFIXED32: [0, -1, 2**31 - 1, -(2**31)],
    F.TYPE_INT64: [0, -1, 1, 2**63 - 1, -(2**63), 2**62, -(2**62)],
    F.TYPE_SINT64: [0, -1, 2**63 - 1, -(2**63)],
    F.TYPE_SFIXED64: [0, -1, 2**63 - 1, -(2**63)],
    F.TYPE_UINT32: [0, 1, 2**32 - 1],
    F.TYPE_FIXED32: [0, 2**32 - 1],
    F.TYPE_UINT64: [0, 1, 2**64 - 1],
    F.TYPE_FIXED64: [0, 2**64 - 1],
}
EDGE_FLOATS = [0.0, -1.0, float("nan"), float("inf"), float("-inf"), 1e308, -1e-308]
# Raw string payloads that protobuf would refuse to build: not UTF-8.
BAD_UTF8 = [b"\xff\xfe", b"\xed\xa0\x80", b"a\xc0\xafb"]
CORRUPT = [b"\xff\xff\xff\xff\xff", b"\x0a\x7f", b"\x0f\x01", b"\x08" + b"\xff" * 11]


@dataclass(frozen=True)
class Target:
    """One RPC to fuzz: its path, request type, and whether it streams back."""

    path: str
    request: descriptor.Descriptor
    streaming: bool
    endless: bool = False


def targets(services: list[descriptor.ServiceDescriptor]) -> list[Target]:
    return [
        Target(
            path=f"/{service.full_name}/{m.name}",
            request=m.input_type,
            streaming=m.server_streaming,
            endless=m.server_streaming and m.name.startswith("Watch"),
        )
        for service in services
        for m in service.methods
    ]


def _scalar(rng: random.Random, field: Any) -> Any:
    if field.type == F.TYPE_STRING:
        return rng.choice(EDGE_STRINGS)
    if field.type == F.TYPE_BYTES:
        return rng.randbytes(rng.choice([0, 1, 64, 4096]))
    if field.type == F.TYPE_BOOL:
        return rng.random() < 0.5
    if field.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return rng.choice(EDGE_FLOATS)
    if field.type == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return rng.choice([*known, 99, -1, 2**31 - 1])
    return rng.choice(EDGE_INTS[field.type])


def _plausible(rng: random.Random, field: Any) -> Any:
    """A value that passes the usual checks, so the edge value next to it gets
    past validation and into the handler's depths."""
    if field.type == F.TYPE_STRING:
        name = field.name
        if name in ("member_id", "author_id"):
            return "fuzz-member"
        if name.endswith(("_id", "_ids")):
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if name in ("page_token", "filter"):
            return ""
        if name == "tier":
            return rng.choice(["member", "core", "honorary", "newcomer"])
        return "plausible text"
    if field.type == F.TYPE_BYTES:
        return b"x"
    if field.type == F.TYPE_BOOL:
        return rng.random() < 0.5
    if field.type in (F.TYPE_FLOAT, F.TYPE_DOUBLE):
        return 1.0
    if field.type == F.TYPE_ENUM:
        values = [v.number for v in field.enum_type.values if v.number]
        return rng.choice(values) if values else 0
    return rng.choice([1, 2, 10])


def _is_map(field: Any) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def _set(
    rng: random.Random,
    msg: message.Message,
    field: Any,
    value_of: Any,
    depth: int,
    many: bool = False,
) -> None:
    """Gives one field values from `value_of(rng, scalar field)`."""
    msg.ClearField(field.name)
    if _is_map(field):
        target = getattr(msg, field.name)
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        if value_field.message_type is None:
            for _ in range(200 if many else rng.choice([1, 3])):
                target[value_of(rng, key_field)] = value_of(rng, value_field)
        return
    if field.type == F.TYPE_MESSAGE:
        if depth >= 3:
            return
        if field.is_repeated:
            for _ in range(1000 if many else rng.choice([1, 2])):
                plausible_fill(rng, getattr(msg, field.name).add(), depth + 1)
        else:
            nested = getattr(msg, field.name)
            plausible_fill(rng, nested, depth + 1)
            if field.message_type.full_name == "google.protobuf.Timestamp":
                nested.seconds = rng.choice([0, -1, 2**62, -(2**62), 253_402_300_800])
                nested.nanos = rng.choice([0, -1, 999_999_999, 1_000_000_000, 2**31 - 1])
        return
    if field.is_repeated:
        value = value_of(rng, field)
        small = value[:8] if isinstance(value, str) and many else value
        getattr(msg, field.name).extend([small] * (100_000 if many else rng.choice([1, 5, 1001])))
    else:
        setattr(msg, field.name, value_of(rng, field))


def plausible_fill(rng: random.Random, msg: message.Message, depth: int = 0) -> None:
    for field in msg.DESCRIPTOR.fields:
        if field.type != F.TYPE_MESSAGE or _is_map(field) or depth < 2:
            _set(rng, msg, field, _plausible, depth)


def mutate(rng: random.Random, msg: message.Message, depth: int = 0) -> None:
    """An edge value in one field, here or in a nested message."""
    fields: list[Any] = list(msg.DESCRIPTOR.fields)
    if not fields:
        return
    field = rng.choice(fields)
    nested = field.type == F.TYPE_MESSAGE and not _is_map(field) and not field.is_repeated
    if nested and depth < 2 and field.message_type.fields and rng.random() < 0.5:
        inner = getattr(msg, field.name)
        plausible_fill(rng, inner, depth + 1)
        mutate(rng, inner, depth + 1)
    else:
        _set(rng, msg, field, _scalar, depth)


def fill(rng: random.Random, msg: message.Message, many: bool = False) -> None:
    """`many`: edge values in every field, repeated ones 100,000 long; else a
    plausible request with one or two fields set to edge values."""
    if many:
        for field in msg.DESCRIPTOR.fields:
            _set(rng, msg, field, _scalar, 0, many=True)
        return
    plausible_fill(rng, msg)
    for _ in range(rng.choice([1, 1, 2])):
        mutate(rng, msg)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def raw_cases(request: descriptor.Descriptor) -> Iterator[bytes]:
    """Bytes no valid message of the type has: invalid UTF-8 in each string
    field (first few), and corrupt wire format."""
    strings = [f for f in request.fields if f.type == F.TYPE_STRING][:3]
    for field, bad in zip(strings, BAD_UTF8, strict=False):
        yield _varint(field.number << 3 | 2) + _varint(len(bad)) + bad
    yield from CORRUPT


def _nul_or_edge(rng: random.Random, field: Any) -> Any:
    return "a\x00b" if field.type == F.TYPE_STRING else _scalar(rng, field)


def each_field(rng: random.Random, cls: type[message.Message]) -> Iterator[message.Message]:
    """A plausible request with one field (top level, or one level down) set to
    an edge value: NUL in a string, else an extreme or unknown value."""
    fields: list[Any] = list(cls.DESCRIPTOR.fields)
    for field in fields:
        msg = cls()
        plausible_fill(rng, msg)
        nested = field.type == F.TYPE_MESSAGE and not _is_map(field) and not field.is_repeated
        if nested and field.message_type.full_name != "google.protobuf.Timestamp":
            for inner_field in field.message_type.fields:
                inner_msg = cls()
                plausible_fill(rng, inner_msg)
                _set(rng, getattr(inner_msg, field.name), inner_field, _nul_or_edge, 1)
                yield inner_msg
            continue
        _set(rng, msg, field, _nul_or_edge, 0)
        yield msg


def cases(target: Target, seed: int, count: int) -> Iterator[bytes]:
    """Every field's edge case, `count` seeded random ones, then the raw
    undecodable ones."""
    rng = random.Random(f"{seed}:{target.path}")
    cls = message_factory.GetMessageClass(target.request)
    yield cls().SerializeToString()
    for msg in each_field(rng, cls):
        yield msg.SerializeToString()
    for index in range(count):
        msg = cls()
        fill(rng, msg, many=index == 0)
        yield msg.SerializeToString()
    yield from raw_cases(target.request)


def problem(code: grpc.StatusCode, details: str) -> str | None:
    """What is wrong with an answer to a caller, or None."""
    if code in FAULT_CODES:
        return f"{code.name}: {details[:200]}"
    for leak in LEAKS:
        if leak.search(details or ""):
            return f"{code.name} leaks {leak.pattern!r}: {details[:200]}"
    return None


async def send(
    channel: grpc.aio.Channel, target: Target, payload: bytes, metadata: Any, deadline: float
) -> tuple[grpc.StatusCode, str]:
    """Sends raw bytes; the status code and message of the answer."""
    try:
        if not target.streaming:
            call = channel.unary_unary(target.path, request_serializer=None)
            await call(payload, metadata=metadata, timeout=deadline)
            return grpc.StatusCode.OK, ""
        stream = channel.unary_stream(target.path, request_serializer=None)(
            payload, metadata=metadata, timeout=deadline
        )
        if target.endless:
            # An endless stream sends its headers once it is open; an error
            # (a refused request) ends it with them.
            await stream.initial_metadata()
            if not stream.done():
                stream.cancel()
                return grpc.StatusCode.OK, ""
            return await stream.code(), await stream.details() or ""
        async for _ in stream:
            pass
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
