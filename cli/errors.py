"""Exit codes scripts can rely on, and one clear line for each failure.

0 ok · 1 other error · 2 usage · 3 not found · 4 permission or authentication ·
5 invalid argument, failed precondition, already exists, out of range, aborted ·
6 unavailable or deadline exceeded (the service could not be reached in time).
"""

from __future__ import annotations

import re

import grpc
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

OK = 0
OTHER = 1
USAGE = 2
NOT_FOUND = 3
DENIED = 4
INVALID = 5
UNAVAILABLE = 6

_EXIT_CODES = {
    grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    grpc.StatusCode.PERMISSION_DENIED: DENIED,
    grpc.StatusCode.UNAUTHENTICATED: DENIED,
    grpc.StatusCode.INVALID_ARGUMENT: INVALID,
    grpc.StatusCode.FAILED_PRECONDITION: INVALID,
    grpc.StatusCode.ALREADY_EXISTS: INVALID,
    grpc.StatusCode.OUT_OF_RANGE: INVALID,
    grpc.StatusCode.ABORTED: INVALID,
    grpc.StatusCode.UNAVAILABLE: UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: UNAVAILABLE,
}


class CliError(Exception):
    """Stops the command: `message` goes to stderr, `exit_code` to the shell."""

    def __init__(self, message: str, exit_code: int = OTHER) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def exit_code_for(code: grpc.StatusCode) -> int:
    return _EXIT_CODES.get(code, OTHER)


def _rich_status(err: grpc.RpcError) -> status_pb2.Status | None:
    """The google.rpc.Status the service sent, when it sent one that agrees
    with the call's code and message."""
    if not hasattr(err, "trailing_metadata"):
        return None
    try:
        status: status_pb2.Status | None = rpc_status.from_call(err)
    except (ValueError, DecodeError):
        return None
    return status


def from_rpc_error(err: grpc.RpcError, *, service: str, target: str, method: str) -> CliError:
    code: grpc.StatusCode = err.code()
    text: str = err.details() or ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return CliError(
            f"cannot reach the {service} service at {target} ({text}); is it running? "
            f"set --{service} or COCREATE_{service.upper()}_TARGET",
            UNAVAILABLE,
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return CliError(
            f"the {service} service at {target} did not answer {method} in time (raise --timeout?)",
            UNAVAILABLE,
        )
    text = cli_words(text)
    extra: list[str] = []
    status = _rich_status(err)
    for packed in status.details if status is not None else ():
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        info = error_details_pb2.ErrorInfo()
        if packed.Unpack(bad):
            extra.extend(f"{v.field}: {v.description}" for v in bad.field_violations)
        elif packed.Unpack(retry):
            seconds = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            extra.append(f"retry in {seconds:.1f}s")
        elif packed.Unpack(info):
            extra.extend(_info_lines(dict(info.metadata)))
    hint = ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        hint = " (pass --token or set COCREATE_TOKEN; `cocreate token` mints a development one)"
    message = f"{method}: {code.name}: {text}{hint}"
    missing = [e for e in dict.fromkeys(extra) if e not in text]
    if missing:
        message += " [" + "; ".join(missing) + "]"
    return CliError(message, exit_code_for(code))


_IDEA_STATUS = re.compile(r"\bIDEA_STATUS_([A-Z_]+)\b")
# What the message already says, or what only a program needs.
_SILENT_METADATA = {"resource", "id", "retry_after_seconds", "current_status", "requested_status"}


def cli_words(text: str) -> str:
    """The API's status names as the CLI spells them: IDEA_STATUS_UNDER_REVIEW → under-review."""
    return _IDEA_STATUS.sub(lambda m: m.group(1).lower().replace("_", "-"), text)


def _info_lines(metadata: dict[str, str]) -> list[str]:
    """What an ErrorInfo's metadata tells a person, in the CLI's words."""
    lines = []
    if metadata.get("final") == "true":
        lines.append(f"{cli_words(metadata.get('current_status', 'the status'))} is final")
    elif "allowed_next_statuses" in metadata:
        allowed = [cli_words(s) for s in metadata["allowed_next_statuses"].split(",") if s]
        lines.append("allowed next: " + (", ".join(allowed) if allowed else "none"))
    for key, value in sorted(metadata.items()):
        if key in _SILENT_METADATA or key in ("final", "allowed_next_statuses") or not value:
            continue
        lines.append(f"{key.replace('_', ' ')}: {cli_words(value)}")
    return lines
