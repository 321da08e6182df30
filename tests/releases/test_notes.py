"""Release notes without I/O: ordering, credits and Markdown escaping."""

from __future__ import annotations

import json

from cocreate.ideas.v1 import release_service_pb2 as pb

from services.ideas.releases import notes


def release(*shipped: pb.ReleasedIdea) -> pb.Release:
    published = pb.Release(
        id="r1",
        version="OS 3.0",
        iteration_name="2026-W48",
        product_id="p1",
        product_name="Phone OS",
        shipped_ideas=shipped,
    )
    published.publish_time.FromJsonString("2026-11-27T10:00:00Z")
    return published


def test_ideas_are_ordered_by_score_and_authors_thanked_before_commenters() -> None:
    low = pb.ReleasedIdea(idea_id="a", number=7, title="Low", author_id="ann", weighted_score=3)
    high = pb.ReleasedIdea(
        idea_id="b", number=9, title="High", author_id="bob", weighted_score=30, voter_count=12
    )
    also_ann = pb.ReleasedIdea(
        idea_id="c", number=8, title="Mid", author_id="ann", weighted_score=10
    )
    built = notes.build(
        release(low, high, also_ann),
        [low, high, also_ann],
        [notes.Commenter("ann", 2), notes.Commenter("cat", 5), notes.Commenter("dan", 1)],
    )
    assert [i.title for i in built.products[0].shipped_ideas] == ["High", "Mid", "Low"]
    assert [
        (c.member_id, c.shipped_ideas, c.weighted_score, c.comments) for c in built.thanks_to
    ] == [
        ("bob", 1, 30, 0),
        ("ann", 2, 13, 2),
        ("cat", 0, 0, 5),
        ("dan", 0, 0, 1),
    ]
    text = notes.markdown(built)
    assert "- **High** (#9): score 30, 12 supporters, idea by bob" in text
    assert "- ann: 2 shipped ideas (score 13), 2 comments on the shipped ideas" in text
    assert "- cat: 5 comments on the shipped ideas" in text
    assert json.loads(notes.as_json(built))["thanksTo"][0]["memberId"] == "bob"


def test_markdown_escapes_what_would_format_and_says_when_nothing_shipped() -> None:
    tricky = pb.ReleasedIdea(
        idea_id="a", number=1, title="Use **bold** | <b>", author_id="x_y", voter_count=1
    )
    text = notes.markdown(notes.build(release(tricky), [tricky], []))
    assert (
        "- **Use \\*\\*bold\\*\\* \\| \\<b\\>** (#1): score 0, 1 supporter, idea by x\\_y" in text
    )
    empty = notes.markdown(notes.build(release(), [], []))
    assert "Nothing shipped in this release." in empty
    assert "Thanks to" not in empty
