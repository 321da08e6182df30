"""JSON-RPC 2.0 on the wire, and its translation to and from protobuf and gRPC.

Error codes:
- the specification's: -32700 parse error, -32600 invalid request, -32601 method
  not found, -32602 invalid params (also for gRPC INVALID_ARGUMENT), -32603 internal;
- every other gRPC status: -32000 minus the status number (NOT_FOUND 5 → -32005,
  DEADLINE_EXCEEDED 4 → -32004, UNAVAILABLE 14 → -32014 ...), with
  `error.data = {"grpcStatus": "NOT_FOUND", "message": ..., "details": [...]}`;
- -32099: a server-streaming answer on /rpc exceeded the gateway's item limit
  (POST /rpc/stream has none).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, json_format, message, message_factory
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
GRPC_ERROR_BASE = -32000
# A server-streaming answer on /rpc longer than the gateway keeps in memory.
STREAM_TOO_LONG = -32099

JsonId = str | int | float | None


class RpcError(Exception):
    def __init__(
        self, code: int, message: str, data: Any = None, *, http_status: int = 200
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        # The HTTP status of an answer refused as a whole (413, 408, 429).
        self.http_status = http_status

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


@dataclass(frozen=True)
class Call:
    """One valid request object. `is_notification`: it had no `id` member."""

    id: JsonId
    is_notification: bool
    method: str
    params: Any  # a dict, a list or None


# Deeper JSON than this is refused before anything walks it recursively.
MAX_NESTING = 64


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is beyond the range of a double")
    return value


def _too_deep() -> RpcError:
    return RpcError(
        INVALID_REQUEST,
        f"the request nests arrays and objects deeper than {MAX_NESTING} levels",
        {"limit": MAX_NESTING},
    )


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _check_document(document: Any) -> None:
    """Refuses nesting beyond MAX_NESTING and strings holding a lone surrogate
    (a `\\ud800` escape: valid JSON syntax, but not Unicode, so it could
    neither go upstream nor be echoed back). Iterative: depth cannot hurt it."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            if _has_surrogate(value):
                raise RpcError(
                    PARSE_ERROR,
                    "Parse error",
                    {"reason": "a string holds a lone surrogate escape, which is not Unicode"},
                )
            continue
        if not isinstance(value, dict | list):
            continue
        if depth > MAX_NESTING:
            raise _too_deep()
        items = list(value.items()) if isinstance(value, dict) else [(None, v) for v in value]
        for key, item in items:
            if key is not None:
                pending.append((key, depth))
            pending.append((item, depth + 1))


def parse_document(body: bytes) -> Any:
    """The JSON document, or RpcError(-32700, or -32600 when nested too deep)."""
    try:
        document = json.loads(
            body.decode("utf-8"), parse_constant=_reject_constant, parse_float=_finite
        )
    except RecursionError:
        raise _too_deep() from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise RpcError(PARSE_ERROR, "Parse error", {"reason": str(exc)}) from None
    _check_document(document)
    return document


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, str | int | float) and not isinstance(value, bool))


def parse_call(obj: Any) -> Call:
    """A request object, or RpcError(-32600) whose `.data` says what is wrong."""
    if not isinstance(obj, dict):
        raise RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "a request is a JSON object"})
    problems = []
    if obj.get("jsonrpc") != "2.0":
        problems.append('"jsonrpc" must be exactly "2.0"')
    if not isinstance(obj.get("method"), str):
        problems.append('"method" must be a string')
    if "params" in obj and not isinstance(obj["params"], dict | list):
        problems.append('"params" must be an object or an array')
    if "id" in obj and not _valid_id(obj["id"]):
        problems.append('"id" must be a string, a number or null')
    extra = sorted(set(obj) - {"jsonrpc", "method", "params", "id"})
    if extra:
        problems.append("unknown members: " + ", ".join(extra))
    if problems:
        raise RpcError(INVALID_REQUEST, "Invalid Request", {"reason": "; ".join(problems)})
    return Call(
        id=obj.get("id"),
        is_notification="id" not in obj,
        method=obj["method"],
        params=obj.get("params"),
    )


def request_id_of(obj: Any) -> JsonId:
    """The id to answer an invalid request with: its own if readable, else null."""
    if isinstance(obj, dict) and _valid_id(obj.get("id")):
        value: JsonId = obj.get("id")
        return value
    return None


def result(call_id: JsonId, value: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": value, "id": call_id}


def error(call_id: JsonId, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": err.to_json(), "id": call_id}


# --- protobuf JSON mapping -------------------------------------------------


def to_json(msg: message.Message) -> dict[str, Any]:
    return json_format.MessageToDict(msg, always_print_fields_with_no_presence=True)


def _violation(field: str, description: str) -> dict[str, str]:
    return {"field": field, "description": description}


def _field_of(descriptor: Any, key: str) -> Any:
    for field in descriptor.fields:
        if key in (field.json_name, field.name):
            return field
    return None


def _find_violations(
    msg_class: type[message.Message], value: Any, path: str
) -> list[dict[str, str]]:
    """Which fields of `value` do not map to `msg_class`, as paths like `a.b[2].c`."""
    descriptor = msg_class.DESCRIPTOR
    if descriptor.full_name.startswith("google.protobuf."):
        try:
            json_format.ParseDict(value, msg_class())
        except (json_format.ParseError, TypeError, ValueError) as exc:
            return [_violation(path, str(exc))]
        return []
    if not isinstance(value, dict):
        return [_violation(path or "params", f"must be a JSON object ({descriptor.name})")]
    violations = []
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        field = _field_of(descriptor, key)
        if field is None:
            violations.append(_violation(where, f"unknown field of {descriptor.full_name}"))
            continue
        try:
            json_format.ParseDict({key: item}, msg_class())
            continue
        except (json_format.ParseError, TypeError, ValueError) as exc:
            problem = str(exc)
        nested = field.message_type
        is_map = nested is not None and nested.GetOptions().map_entry
        if nested is not None and not is_map:
            nested_class = message_factory.GetMessageClass(nested)
            if field.is_repeated and isinstance(item, list):
                found = [
                    v
                    for i, element in enumerate(item)
                    for v in _find_violations(nested_class, element, f"{where}[{i}]")
                ]
            elif not field.is_repeated:
                found = _find_violations(nested_class, item, where)
            else:
                found = []
            if found:
                violations.extend(found)
                continue
        violations.append(_violation(where, problem))
    return violations


def to_request(msg_class: type[message.Message], params: Any) -> message.Message:
    """`params` (named) in protobuf's JSON mapping as a request message, or
    RpcError(-32602) with every violated field in `data.fieldViolations`."""
    if isinstance(params, list):
        raise RpcError(
            INVALID_PARAMS,
            "Invalid params",
            {
                "reason": "positional params cannot map to a protobuf message; "
                "pass the request as an object with named fields",
                "fieldViolations": [_violation("params", "must be a JSON object")],
            },
        )
    request = msg_class()
    try:
        json_format.ParseDict(params or {}, request)
    except (json_format.ParseError, TypeError, ValueError) as exc:
        violations = _find_violations(msg_class, params, "") or [_violation("params", str(exc))]
        raise RpcError(
            INVALID_PARAMS,
            "Invalid params",
            {"reason": str(exc), "fieldViolations": violations},
        ) from None
    return request


# --- gRPC status -----------------------------------------------------------


def status_error(
    code: grpc.StatusCode, message_text: str, *, http_status: int = 200, **data: Any
) -> RpcError:
    """An error the gateway answers itself in the form of an upstream status
    (-32000 − n, `data.grpcStatus`), so callers handle both alike."""
    return RpcError(
        GRPC_ERROR_BASE - code.value[0],
        message_text,
        {"grpcStatus": code.name, "message": message_text, "details": [], **data},
        http_status=http_status,
    )


def _rich_status(err: grpc.aio.AioRpcError) -> status_pb2.Status | None:
    """The google.rpc.Status the service sent; None when there is none, or
    one that cannot be read or disagrees with the call's code and message."""
    try:
        status: status_pb2.Status | None = rpc_status.from_call(err)
    except (ValueError, DecodeError):
        return None
    return status


def _detail_json(packed: any_pb2.Any) -> dict[str, Any]:
    try:
        return json_format.MessageToDict(packed)
    except (TypeError, KeyError, json_format.Error):
        return {"@type": packed.type_url}


def from_grpc(err: grpc.aio.AioRpcError, *, upstream: str, target: str) -> RpcError:
    """The JSON-RPC error for a failed upstream call."""
    code: grpc.StatusCode = err.code()
    status = _rich_status(err)
    details = [_detail_json(d) for d in status.details] if status is not None else []
    text = err.details() or code.name
    data: dict[str, Any] = {"grpcStatus": code.name, "message": text, "details": details}
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        violations: list[dict[str, str]] = []
        for packed in status.details if status is not None else ():
            bad = error_details_pb2.BadRequest()
            if packed.Unpack(bad):
                violations.extend(_violation(v.field, v.description) for v in bad.field_violations)
        data["fieldViolations"] = violations
        return RpcError(INVALID_PARAMS, "Invalid params", data)
    if code == grpc.StatusCode.UNAVAILABLE:
        message_text = f"the {upstream} service at {target} is unavailable: {text}"
    else:
        message_text = text
    return RpcError(GRPC_ERROR_BASE - code.value[0], message_text, data)
