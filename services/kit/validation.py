"""Checks every service makes on what callers send, the same way everywhere.

Postgres text cannot hold NUL, so a NUL in any text that reaches SQL is the
caller's mistake (INVALID_ARGUMENT), not a database failure. Timestamps must
be ones Python and Postgres can hold: 0001-01-01 to 9999-12-31 UTC, with
nanos in 0..999,999,999.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf import field_mask_pb2, timestamp_pb2

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


def check_update_mask(
    v: Violations, mask: field_mask_pb2.FieldMask, allowed: tuple[str, ...]
) -> set[str]:
    """The paths an update names (all it allows when the mask is empty, AIP-134);
    a path it does not allow is the caller's mistake."""
    paths = set(mask.paths) or set(allowed)
    unknown = sorted(paths - set(allowed))
    v.check(not unknown, "update_mask", f"unknown paths {unknown}; allowed: {list(allowed)}")
    return paths & set(allowed)


# Ids. A service checks the ids it minted (products, ideas, comments,
# iterations, releases: UUIDs) as UUIDs; an id it takes from elsewhere — a
# member id (a token's subject), an idea id as the votes service receives it
# from the ideas service's events — as a key: any printable text up to
# MAX_KEY_LENGTH, without surrounding spaces.
MAX_KEY_LENGTH = 128


def check_uuid(v: Violations, raw: str, field: str, *, required: bool = True) -> str:
    """A UUID this service minted; its canonical lower-case form ("" if absent
    or wrong, with the violation recorded)."""
    if not raw:
        if required:
            v.add(field, "is required")
        return ""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        v.add(field, "must be a UUID")
        return ""


def check_key(v: Violations, raw: str, field: str, *, required: bool = True) -> str:
    """An id minted elsewhere: printable, at most MAX_KEY_LENGTH characters,
    without surrounding spaces ("" if absent or wrong, with the violation recorded)."""
    if not raw:
        if required:
            v.add(field, "is required")
        return ""
    if len(raw) > MAX_KEY_LENGTH:
        v.add(field, f"must be at most {MAX_KEY_LENGTH} characters")
    elif not raw.isprintable() or raw != raw.strip():
        v.add(field, "must be printable, without surrounding spaces")
    else:
        return raw
    return ""


MAX_ETAG_LENGTH = 64


def check_etag(v: Violations, raw: str, field: str = "etag") -> str:
    """An etag given back on an update (AIP-154): optional, short and
    printable; whether it is current is the change's to say."""
    v.check(
        len(raw) <= MAX_ETAG_LENGTH and raw.isprintable(),
        field,
        f"must be the etag as read (at most {MAX_ETAG_LENGTH} printable characters)",
    )
    return raw
