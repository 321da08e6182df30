"""Exit codes scripts can rely on, and one clear line for each failure.

0 ok · 1 other error · 2 usage · 3 not found · 4 permission or authentication ·
5 invalid argument, failed precondition, already exists, out of range, aborted ·
6 unavailable or deadline exceeded (the service could not be reached in time).
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

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
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "grpc-status-details-bin" and isinstance(value, bytes):
            status = status_pb2.Status()
            status.ParseFromString(value)
            return status
    return None


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
    extra: list[str] = []
    status = _rich_status(err)
    for packed in status.details if status is not None else ():
        bad = error_details_pb2.BadRequest()
        retry = error_details_pb2.RetryInfo()
        if packed.Unpack(bad):
            extra.extend(f"{v.field}: {v.description}" for v in bad.field_violations)
        elif packed.Unpack(retry):
            seconds = retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9
            extra.append(f"retry in {seconds:.1f}s")
    hint = ""
    if code == grpc.StatusCode.UNAUTHENTICATED:
        hint = " (pass --token or set COCREATE_TOKEN; `cocreate token` mints a development one)"
    message = f"{method}: {code.name}: {text}{hint}"
    if extra and not all(e in text for e in extra):
        message += " [" + "; ".join(extra) + "]"
    return CliError(message, exit_code_for(code))
