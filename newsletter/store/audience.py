"""Who receives an issue, as SQL on `subscribers`: `receiving` (active, not paused: the rule
every plan, claim and audience count keeps) and a segment's where-clause
(`newsletter.segment_syntax`'s tree compiled), as it is now or as it stood when an issue
was planned (`as_planned`: the tags a reader had then)."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import ColumnElement, and_, case, false, not_, null, or_, true

from newsletter.records import SubscriberStatus
from newsletter.segment_syntax import Age, All, Node, Not, Tag, parse
from newsletter.store.schema import subscribers

_S = subscribers.c


def receiving(now: datetime | ColumnElement[datetime]) -> ColumnElement[bool]:
    """Who gets an issue at all: active, and not paused (a pause ends by itself). Planning
    (`Deliveries.plan`), each claim and every audience count add a segment's clause to it."""
    return and_(
        _S.status == SubscriberStatus.ACTIVE,
        or_(_S.paused_until.is_(None), _S.paused_until <= now),
    )


def clause(
    node: Node,
    now: datetime | None,
    tags: ColumnElement[str] = _S.tag_text,
    opened: ColumnElement[datetime] = _S.last_opened_at,
) -> ColumnElement[bool]:
    """The where-clause of a segment's tree; a relative age counts back from `now`, an
    anchored one from its instant (a plan's, `now` None, has only those). `tags` and
    `opened` are the columns read (or what stood in them at planning)."""
    if isinstance(node, Tag):
        # The tags' copy on the row (store/tags.py keeps it), not a join: one index scan.
        return tags.contains(f" {node.name} ", autoescape=True)
    if isinstance(node, Age):
        start = node.anchor or now
        if start is None:
            raise ValueError(f"{node.field}{node.op}: a relative age where an anchored one is due")
        since = start - node.span
        if node.field == "joined":
            return _S.created_at > since if node.op == "<" else _S.created_at <= since
        recent = and_(opened.is_not(None), opened > since)
        # opened>90d: not opened in the last 90 days, never opened included.
        return recent if node.op == "<" else not_(recent)
    if isinstance(node, Not):
        return not_(clause(node.inner, now, tags, opened))
    parts = [clause(part, now, tags, opened) for part in node.parts]
    return and_(true(), *parts) if isinstance(node, All) else or_(false(), *parts)


@lru_cache(maxsize=64)
def planned(expression: str) -> ColumnElement[bool]:
    """A plan's segment (anchored: `segment_syntax.anchored`) as it matches now; everyone
    for "". Cached: a sender claims many batches of one plan."""
    if not expression:
        return true()
    return clause(parse(expression), None)


def as_planned(
    expression: str, planned_at: datetime | ColumnElement[datetime]
) -> ColumnElement[bool]:
    """A plan's segment as it matched at planning, as far as the rows still tell: the tags a
    reader had then (`tags_before` when they changed since), their last open if it was
    before (one who opened since is taken as not having opened before: the earlier open is
    not kept)."""
    if not expression:
        return true()
    changed = _S.tags_changed_at >= planned_at
    tags = case((changed, _S.tags_before), else_=_S.tag_text)
    opened = case((_S.last_opened_at >= planned_at, null()), else_=_S.last_opened_at)
    return clause(parse(expression), None, tags, opened)
