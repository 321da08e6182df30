"""A backend failure is an answer a client can act on: what asyncpg raises
when Postgres dies under a call maps to UNAVAILABLE (retry) or ABORTED (redo),
never INTERNAL. The crash schedules (tests/faults) see this end to end; this
pins the mapping of each exception they met."""

from __future__ import annotations

import asyncpg
import grpc
import pytest

from services.kit import errors


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        # A transaction started on a connection whose server just died.
        (
            asyncpg.exceptions._base.InternalClientError(
                "cannot switch to state 15; another operation (2) is in progress"
            ),
            grpc.StatusCode.UNAVAILABLE,
        ),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), grpc.StatusCode.UNAVAILABLE),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            grpc.StatusCode.UNAVAILABLE,
        ),
        (ConnectionRefusedError(111, "Connect call failed"), grpc.StatusCode.UNAVAILABLE),
        (asyncpg.DeadlockDetectedError("deadlock detected"), grpc.StatusCode.ABORTED),
    ],
)
def test_a_backend_failure_answers_a_retryable_status(
    raised: BaseException, code: grpc.StatusCode
) -> None:
    mapped = errors.from_exception(raised)
    assert mapped is not None and mapped.code == code


def test_our_own_bug_is_not_mistaken_for_a_backend_failure() -> None:
    assert errors.from_exception(ValueError("a bug")) is None
