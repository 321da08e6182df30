"""The read requests' filters, checked and turned into the queries store.py
runs (ListIdeas and ExportIdeas share them)."""

from __future__ import annotations

from cocreate.ideas.v1 import ideas_service_pb2 as pb

from services.ideas import domain
from services.ideas.store import IdeaQuery, Order
from services.kit.auth import Caller
from services.kit.errors import Violations
from services.kit.validation import check_timestamp, check_uuid

MAX_QUERY = 200
MAX_MEMBER_ID = 128


def idea_query(v: Violations, caller: Caller, flt: pb.IdeaFilter, order: int) -> IdeaQuery:
    """The ideas a list's filter and order select, as the query store runs."""
    product_id = check_uuid(v, flt.product_id, "filter.product_id", required=False)
    for index, status in enumerate(flt.statuses):
        domain.check_status(v, status, f"filter.statuses[{index}]")
    tag = domain.normalise_tag(flt.tag)
    v.check(not flt.tag or len(tag) <= domain.TAG_MAX, "filter.tag", "is too long")
    v.check(len(flt.author_id) <= MAX_MEMBER_ID, "filter.author_id", "is too long")
    text = flt.query.strip()
    v.check(len(text) <= MAX_QUERY, "filter.query", f"at most {MAX_QUERY} characters")
    for name, value in (("query", text), ("tag", tag), ("author_id", flt.author_id)):
        domain.check_storable(v, value, f"filter.{name}")
    v.check(
        order in pb.IdeaOrder.values(), "order", "must be TOP, TRENDING, NEWEST, MOST_DISCUSSED"
    )
    if flt.include_hidden and not caller.is_staff:
        v.add("filter.include_hidden", "only PMs and admins see hidden ideas")
    return IdeaQuery(
        product_id=product_id,
        statuses=sorted(set(flt.statuses)),
        tag=tag,
        author_id=flt.author_id,
        text=text,
        include_hidden=flt.include_hidden,
        order=Order(order) if order in set(Order) else Order.NEWEST,
    )


def export_query(v: Violations, caller: Caller, request: pb.ExportIdeasRequest) -> IdeaQuery:
    """A list's query, within the optional creation window."""
    query = idea_query(v, caller, request.filter, request.order)
    v.check(request.limit >= 0, "limit", "must not be negative")
    if request.HasField("created_after"):
        query.created_after = check_timestamp(v, request.created_after, "created_after")
    if request.HasField("created_before"):
        query.created_before = check_timestamp(v, request.created_before, "created_before")
    if query.created_after and query.created_before:
        v.check(
            query.created_after < query.created_before,
            "created_before",
            "must be after created_after",
        )
    return query
