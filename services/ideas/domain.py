"""The rules of ideas: what a valid title, body and tag is, which status may
follow which, who may edit, and how a merge target resolves. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from cocreate.ideas.v1.idea_status_pb2 import IdeaStatus

from services.kit.auth import Caller, Role
from services.kit.errors import FailedPrecondition, PermissionDenied, Violations
from services.kit.validation import check_text

TITLE_MIN, TITLE_MAX = 3, 120
BODY_MAX = 10_000
TAGS_MAX = 10
TAG_MAX = 32
COMMENT_MAX = 5_000
NOTE_MAX = 2_000
PRODUCT_NAME_MAX = 80
PRODUCT_DESCRIPTION_MAX = 2_000

OPEN = IdeaStatus.IDEA_STATUS_OPEN
UNDER_REVIEW = IdeaStatus.IDEA_STATUS_UNDER_REVIEW
PLANNED = IdeaStatus.IDEA_STATUS_PLANNED
IN_PROGRESS = IdeaStatus.IDEA_STATUS_IN_PROGRESS
SHIPPED = IdeaStatus.IDEA_STATUS_SHIPPED
DECLINED = IdeaStatus.IDEA_STATUS_DECLINED
MERGED = IdeaStatus.IDEA_STATUS_MERGED

FINAL_STATUSES = frozenset({SHIPPED, DECLINED, MERGED})

# The workflow: each step forward, and declined from any non-final state.
_NEXT: dict[int, tuple[int, ...]] = {
    OPEN: (UNDER_REVIEW, DECLINED),
    UNDER_REVIEW: (PLANNED, DECLINED),
    PLANNED: (IN_PROGRESS, DECLINED),
    IN_PROGRESS: (SHIPPED, DECLINED),
}
# A release cut (the release tooling's SERVICE role) ships what was planned
# and marked done without passing through in-progress.
_RELEASE_NEXT: dict[int, tuple[int, ...]] = {PLANNED: (SHIPPED,)}


def status_name(status: int) -> str:
    return IdeaStatus.Name(status)  # type: ignore[arg-type]


def is_final(status: int) -> bool:
    return status in FINAL_STATUSES


def allowed_next_statuses(current: int, role: Role) -> list[int]:
    allowed = list(_NEXT.get(current, ()))
    if role == Role.SERVICE:
        allowed += [s for s in _RELEASE_NEXT.get(current, ()) if s not in allowed]
    return allowed


def check_transition(current: int, new: int, role: Role) -> None:
    """FAILED_PRECONDITION unless `new` may follow `current` for this role;
    the allowed next states travel in the error's metadata."""
    allowed = allowed_next_statuses(current, role)
    if new in allowed:
        return
    message = f"an idea cannot go from {status_name(current)} to {status_name(new)}"
    if is_final(current):
        message += f"; {status_name(current)} is final: no status may follow it"
    elif allowed:
        message += "; allowed next: " + ", ".join(status_name(s) for s in allowed)
    raise FailedPrecondition(
        message,
        reason="ILLEGAL_STATUS_TRANSITION",
        metadata={
            "current_status": status_name(current),
            "requested_status": status_name(new),
            "allowed_next_statuses": ",".join(status_name(s) for s in allowed),
            "final": "true" if is_final(current) else "false",
        },
    )


# Every text is stored and returned exactly as written, control characters
# included; only NUL is refused, because Postgres cannot store it. Whoever
# shows a text (a terminal table, Markdown) makes control characters visible.


def clean_title(v: Violations, raw: str, field: str = "title") -> str:
    title = raw.strip()
    if v.check(
        TITLE_MIN <= len(title) <= TITLE_MAX,
        field,
        f"must be {TITLE_MIN}..{TITLE_MAX} characters after trimming",
    ):
        check_text(v, title, field)
    return title


def clean_body(v: Violations, raw: str, field: str = "body", maximum: int = BODY_MAX) -> str:
    body = raw.strip()
    if v.check(len(body) <= maximum, field, f"must be at most {maximum:,} characters"):
        check_text(v, body, field)
    return body


def check_storable(v: Violations, text: str, field: str) -> None:
    """Anything compared in SQL must be storable text: no NUL."""
    check_text(v, text, field)


def clean_comment_body(v: Violations, raw: str, field: str = "body") -> str:
    body = clean_body(v, raw, field, COMMENT_MAX)
    if not body:
        v.add(field, "must not be empty")
    return body


def normalise_tag(raw: str) -> str:
    return "-".join(raw.strip().lower().split())


def _valid_tag(tag: str) -> bool:
    return 1 <= len(tag) <= TAG_MAX and all(ch.isalnum() or ch in "-_." for ch in tag)


def clean_tags(v: Violations, raw: Sequence[str], field: str = "tags") -> list[str]:
    tags: list[str] = []
    for index, item in enumerate(raw):
        tag = normalise_tag(item)
        if not _valid_tag(tag):
            v.add(
                f"{field}[{index}]",
                f"must be 1..{TAG_MAX} letters, digits, '-', '_' or '.'",
            )
        elif tag not in tags:
            tags.append(tag)
    v.check(len(tags) <= TAGS_MAX, field, f"at most {TAGS_MAX} tags")
    return tags


def clean_name(v: Violations, raw: str, field: str, *, maximum: int, required: bool) -> str:
    """A name: trimmed, kept exactly (no NUL)."""
    text = raw.strip()
    if required and not text:
        v.add(field, "is required")
    elif len(text) > maximum:
        v.add(field, f"must be at most {maximum:,} characters")
    else:
        check_text(v, text, field)
    return text


def clean_note(
    v: Violations, raw: str, field: str, *, maximum: int = NOTE_MAX, required: bool = False
) -> str:
    """A note or a reason: trimmed, kept exactly (no NUL)."""
    text = clean_body(v, raw, field, maximum)
    if required and not text:
        v.add(field, "is required")
    return text


def check_status(v: Violations, status: int, field: str) -> None:
    v.check(
        status in IdeaStatus.values() and status != IdeaStatus.IDEA_STATUS_UNSPECIFIED,
        field,
        "must be a known status",
    )


@dataclass(frozen=True)
class EditableIdea:
    author_id: str
    status: int
    created_at: datetime


def check_may_edit(caller: Caller, author_id: str | None) -> None:
    """PERMISSION_DENIED unless the caller is a PM, an admin or the author of
    the idea (None: no such idea, which only PMs and admins may learn)."""
    if caller.role in (Role.PM, Role.ADMIN) or caller.member_id == author_id:
        return
    raise PermissionDenied("only the author, a PM or an admin may edit an idea")


def check_can_edit(caller: Caller, idea: EditableIdea, now: datetime, window: timedelta) -> None:
    """PMs and admins may always edit (a merged idea is read-only for all);
    the author while the idea is open and within the window."""
    if idea.status == MERGED:
        raise FailedPrecondition("a merged idea is read-only", reason="IDEA_MERGED")
    if caller.role in (Role.PM, Role.ADMIN):
        return
    if caller.member_id != idea.author_id:
        raise PermissionDenied("only the author, a PM or an admin may edit an idea")
    if idea.status != OPEN:
        raise FailedPrecondition(
            f"the author may edit only while the idea is open; it is {status_name(idea.status)}",
            reason="IDEA_NOT_OPEN",
        )
    if now - idea.created_at > window:
        raise FailedPrecondition(
            f"the author may edit within {int(window.total_seconds())}s of submitting",
            reason="EDIT_WINDOW_CLOSED",
            metadata={"edit_window_seconds": str(int(window.total_seconds()))},
        )


def check_merge(source_id: str, source_status: int, target_id: str, target_status: int) -> None:
    """`target_*` is the final target (merge chains already resolved)."""
    if source_id == target_id:
        raise FailedPrecondition("an idea cannot be merged into itself", reason="MERGE_INTO_SELF")
    if source_status == MERGED:
        raise FailedPrecondition("the source is already merged", reason="ALREADY_MERGED")
    if is_final(source_status):
        raise FailedPrecondition(
            f"the source is {status_name(source_status)}; only open ideas can be merged",
            reason="SOURCE_CLOSED",
        )
    if is_final(target_status):
        raise FailedPrecondition(
            f"the target is {status_name(target_status)}; merge into an open idea",
            reason="TARGET_CLOSED",
            metadata={"target_idea_id": target_id},
        )


def merged_tags(target: Iterable[str], source: Iterable[str]) -> list[str]:
    """The target's tags, then the source's it lacks (a merge may exceed the
    submit limit: nothing a member wrote is dropped)."""
    tags = list(target)
    tags += [t for t in source if t not in tags]
    return tags
