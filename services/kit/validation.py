"""Checks every service makes on what callers send, the same way everywhere.

Postgres text cannot hold NUL, so a NUL in any text that reaches SQL is the
caller's mistake (INVALID_ARGUMENT), not a database failure. Timestamps must
be ones Python and Postgres can hold: 0001-01-01 to 9999-12-31 UTC, with
nanos in 0..999,999,999.
"""

from __future__ import annotations

from datetime import UTC, datetime

from google.protobuf import timestamp_pb2

from services.kit.errors import Violations

NUL = "\x00"
NO_NUL = "must not contain NUL characters"

# Seconds since the epoch of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799


def storable(text: str) -> bool:
    """Whether Postgres can store the text."""
    return NUL not in text


def check_text(v: Violations, text: str, field: str) -> bool:
    """Adds a violation when `text` cannot be stored (a NUL in it)."""
    return v.check(storable(text), field, NO_NUL)


def check_timestamp(v: Violations, stamp: timestamp_pb2.Timestamp, field: str) -> datetime | None:
    """The timestamp as an aware datetime, or a violation when it is out of range."""
    if not (
        MIN_TIMESTAMP_SECONDS <= stamp.seconds <= MAX_TIMESTAMP_SECONDS
        and 0 <= stamp.nanos < 1_000_000_000
    ):
        v.add(
            field, "must be a time between 0001-01-01 and 9999-12-31 (UTC), nanos in 0..999999999"
        )
        return None
    return stamp.ToDatetime(tzinfo=UTC)
