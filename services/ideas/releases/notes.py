"""Release notes: built from a release's snapshot of its shipped ideas, and
rendered as Markdown or JSON. No I/O.

Who is thanked: the ideas service owns authors and comments but not the
individual votes (the votes service does), so "thanks to" names the authors
of the shipped ideas (by the weighted score of what they shipped) and then
the members who discussed the shipped ideas most (visible, non-official
comments). Supporters are credited by number, per idea and in total.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from cocreate.ideas.v1 import release_service_pb2 as pb
from google.protobuf import json_format

from services.kit.text import one_line

MAX_COMMENTERS = 5

MARKDOWN = "text/markdown"
JSON = "application/json"

# Inline text never starts a line here, so only what formats mid-line is escaped.
_MARKDOWN_SPECIAL = set("\\`*_[]<>|~")


@dataclass(frozen=True)
class Commenter:
    member_id: str
    comments: int


def build(
    release: pb.Release, shipped: Sequence[pb.ReleasedIdea], commenters: Sequence[Commenter]
) -> pb.ReleaseNotes:
    ideas = sorted(shipped, key=lambda i: (-i.weighted_score, i.number, i.idea_id))
    notes = pb.ReleaseNotes(
        release_id=release.id,
        version=release.version,
        iteration_name=release.iteration_name,
        publish_time=release.publish_time,
        total_supporters=sum(i.voter_count for i in ideas),
    )
    if ideas:
        notes.products.append(
            pb.ProductNotes(
                product_id=release.product_id,
                product_name=release.product_name,
                shipped_ideas=ideas,
            )
        )
    authors: dict[str, pb.Contributor] = {}
    for idea in ideas:
        credit = authors.setdefault(idea.author_id, pb.Contributor(member_id=idea.author_id))
        credit.shipped_ideas += 1
        credit.weighted_score += idea.weighted_score
    by_count = {c.member_id: c.comments for c in commenters}
    for member_id, credit in authors.items():
        credit.comments = by_count.get(member_id, 0)
    thanked = sorted(authors.values(), key=lambda c: (-c.weighted_score, c.member_id))
    talkers = [
        pb.Contributor(member_id=c.member_id, comments=c.comments)
        for c in commenters
        if c.member_id not in authors
    ]
    notes.thanks_to.extend([*thanked, *talkers[:MAX_COMMENTERS]])
    return notes


def escape(text: str) -> str:
    """Markdown-safe inline text: special characters backslash-escaped."""
    return "".join("\\" + ch if ch in _MARKDOWN_SPECIAL else ch for ch in one_line(text))


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def markdown(notes: pb.ReleaseNotes) -> str:
    published = notes.publish_time.ToDatetime().date().isoformat()
    lines = [
        f"# Release {escape(notes.version)}",
        "",
        f"Iteration {escape(notes.iteration_name)}, published {published}.",
        "",
    ]
    if not notes.products:
        lines += ["Nothing shipped in this release.", ""]
    for product in notes.products:
        lines += [f"## {escape(product.product_name)}", ""]
        for idea in product.shipped_ideas:
            lines.append(
                f"- **{escape(idea.title)}** (#{idea.number}): "
                f"score {idea.weighted_score}, {_plural(idea.voter_count, 'supporter')}, "
                f"idea by {escape(idea.author_id)}"
            )
        lines.append("")
    if notes.thanks_to:
        lines += ["## Thanks to", ""]
        for person in notes.thanks_to:
            why = []
            if person.shipped_ideas:
                why.append(
                    f"{_plural(person.shipped_ideas, 'shipped idea')} "
                    f"(score {person.weighted_score})"
                )
            if person.comments:
                why.append(f"{_plural(person.comments, 'comment')} on the shipped ideas")
            lines.append(f"- {escape(person.member_id)}: " + ", ".join(why))
        lines.append("")
    if notes.total_supporters:
        lines += [
            f"And thank you for the {_plural(notes.total_supporters, 'vote')} of support "
            "that put these ideas on the plan.",
            "",
        ]
    return "\n".join(lines)


def as_json(notes: pb.ReleaseNotes) -> str:
    return json_format.MessageToJson(
        notes, always_print_fields_with_no_presence=True, indent=2, ensure_ascii=False
    )
